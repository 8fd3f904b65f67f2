"""End-to-end training on the embedded digits data through FFCV: learning, resume, the pair."""

from __future__ import annotations

import json

import pytest
from conftest import ACDC_SHORT, assert_same_final_weights, evaluate_checkpoint, load_state, train


def test_dense_run_on_digits_learns(run_dir):
    summary = train(["sparsity=dense", "trainer.epochs=4", "lr_schedule.warmup_epochs=1"], run_dir)
    assert summary["final_top1"] > 90.0
    assert summary["final_phase"] == "dense"
    # the saved model, evaluated again from its file, scores what the run reported
    assert evaluate_checkpoint(str(run_dir), "final")["top1"] == pytest.approx(summary["final_top1"], abs=1e-9)
    on_disk = json.loads((run_dir / "summary.json").read_text())
    assert on_disk["final_top1"] == summary["final_top1"]
    assert (run_dir / "training_curve.png").stat().st_size > 1000


# acdc_short: conftest's session run of ACDC_SHORT (test_ddp compares its 2-rank run with it)


def test_resume_from_epoch1_checkpoint_matches_uninterrupted(acdc_short, tmp_path):
    full, part = acdc_short[0], tmp_path / "part"
    spe = load_state(full / "checkpoints" / "last.pt")["step"] // 3
    stopped = train(ACDC_SHORT + [f"trainer.max_steps={spe}"], part)  # stops after epoch 1
    assert stopped["interrupted"] and stopped["step"] == spe
    assert load_state(part / "checkpoints" / "last.pt")["step"] == spe
    train(ACDC_SHORT + ["trainer.resume=auto"], part)
    assert_same_final_weights(full, part)


def test_resume_mid_compressed_phase_keeps_mask(acdc_short, tmp_path):
    full, part = acdc_short[0], tmp_path / "part"
    spe = load_state(full / "checkpoints" / "last.pt")["step"] // 3
    mid = spe + spe // 2  # inside the compressed phase [1, 2)
    train(ACDC_SHORT + [f"trainer.max_steps={mid}"], part)
    state = load_state(part / "checkpoints" / "last.pt")
    masks = state["sparsifier"]["masks"]
    assert masks, "a compressed phase checkpoint holds masks"
    kept = pruned = 0
    for name, mask in masks.items():
        assert (state["model"][name][~mask] == 0).all()  # every masked weight is zero in the checkpoint
        kept, pruned = kept + int(mask.sum()), pruned + int((~mask).sum())
    assert pruned / (kept + pruned) == pytest.approx(0.8, abs=0.01)
    train(ACDC_SHORT + ["trainer.resume=auto"], part)
    assert_same_final_weights(full, part)


def test_sparse_dense_pair_is_saved_and_evaluated(acdc_short):
    run_dir, summary = acdc_short
    dense = load_state(run_dir / "checkpoints" / "dense.pt")
    final = load_state(run_dir / "checkpoints" / "final.pt")
    assert dense["epoch"] == 1.0  # end of the last dense phase
    assert summary["dense_top1"] == dense["metrics"]["top1"]
    assert summary["sparse_top1"] == final["metrics"]["top1"]
    # both members, evaluated again from their files, score what the summary reports
    dense_top1 = evaluate_checkpoint(str(run_dir), "dense")["top1"]
    sparse_top1 = evaluate_checkpoint(str(run_dir), "final")["top1"]
    assert summary["dense_top1"] == pytest.approx(dense_top1, abs=1e-9)
    assert summary["sparse_top1"] == pytest.approx(sparse_top1, abs=1e-9)
    assert summary["dense_sparse_gap"] == pytest.approx(dense_top1 - sparse_top1, abs=1e-9)
    names = list(final["sparsifier"]["names"])
    zero = sum(int((final["model"][n] == 0).sum()) for n in names)
    total = sum(final["model"][n].numel() for n in names)
    assert abs(zero / total - 0.8) < 0.01
    # the dense member is dense in the pruned layers (no zeros from masks)
    assert all((dense["model"][n] != 0).float().mean() > 0.99 for n in names)
    assert abs(summary["sparsity_pruned_layers"] - 0.8) < 0.01
