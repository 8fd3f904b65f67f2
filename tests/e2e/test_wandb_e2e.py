"""The digits demo through the real trainer with logger=wandb (offline), read back from the
.wandb files: phases, per-layer sparsity, both validation curves, the pair's summary, the
config, and the run id kept across a resume.

One AC/DC run of 6 epochs x 3 steps is trained in two segments: it stops after epoch 3
(trainer.max_steps), then resumes from its checkpoint in the same run dir.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import open_dict
from wandb_records import read_run

from acdc_exp.config.compose import compose_config, finalize
from acdc_exp.loggers.wandb_logger import layer_key
from acdc_exp.plan import Plan
from acdc_exp.runs.train import run_training

SPE = 3  # steps per epoch (data.limit_train_batches)
EPOCHS = 6
# sparsity.start_epoch=1, end_epoch=5, update_frequency=1: dense, dense, compressed, dense,
# compressed, compressed (the phase beginning at end - freq is compressed, masks stay on)
EXPECTED_PHASES = [0, 0, 1, 0, 1, 1]

OVERRIDES = [
    "logger=wandb",
    "logger.mode=offline",
    "logger.log_every_steps=1",
    "logger.log_artifacts=true",
    f"trainer.epochs={EPOCHS}",
    "sparsity.start_epoch=1",
    "sparsity.end_epoch=5",
    "sparsity.update_frequency=1",
    "sparsity.sparsity=0.8",
    f"data.limit_train_batches={SPE}",
    "data.limit_val_batches=1",
    "model.width=8",
    "trainer.num_threads=1",
    "trainer.progress=false",
    "trainer.device=cpu",
    "trainer.resume=auto",
    "seed=1",
]


def train(run_dir: Path, extra: list[str]) -> dict:
    overrides = OVERRIDES + extra
    cfg = finalize(compose_config(overrides), overrides)
    with open_dict(cfg):
        cfg.paths.run_dir = str(run_dir)
    return run_training(cfg, overrides)


@pytest.fixture(scope="module")
def acdc_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("wandb_e2e")
    run_dir = root / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_DATA_DIR", str(root / "wandb_data"))  # artifact staging, not ~/.local/share
        first = train(run_dir, [f"trainer.max_steps={3 * SPE}"])  # stops after epoch 3
        last_after_first = torch.load(run_dir / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
        second = train(run_dir, [])  # trainer.resume=auto picks up checkpoints/last.pt
    cfg = compose_config(OVERRIDES)
    plan = Plan.from_config(cfg, SPE)
    return run_dir, first, second, last_after_first, plan, read_run(run_dir)


def test_plan_is_what_the_test_expects(acdc_run):
    *_, plan, _ = acdc_run
    assert [plan.at(e * SPE).phase_id for e in range(EPOCHS)] == EXPECTED_PHASES


def test_run_id_is_kept_across_the_resume(acdc_run):
    run_dir, first, second, last_after_first, _, run = acdc_run
    assert len(run.segments) == 2
    assert first["interrupted"] and first["step"] == 3 * SPE
    assert second["wandb_run_id"] == last_after_first["logger_run_id"] == run.run_id
    assert run.exit_codes == [0, 0]
    assert run.name.startswith("digits_acdc-") and len(run.name) <= 128


def test_phase_switches_at_the_plans_epochs(acdc_run):
    *_, plan, run = acdc_run
    rows = run.series("schedule/phase", x="trainer/step")
    # every optimizer step logged once, in order, through both segments
    assert [s for s, _ in rows] == list(range(1, EPOCHS * SPE + 1))
    # the row at trainer/step s describes the step just taken, s - 1
    assert [phase for _, phase in rows] == [plan.at(s - 1).phase_id for s, _ in rows]
    per_epoch = [phase for s, phase in rows if (s - 1) % SPE == 0]
    assert per_epoch == EXPECTED_PHASES
    names = dict(run.series("schedule/phase_name", x="trainer/step"))
    assert names[2 * SPE + 1] == "compressed" and names[3 * SPE + 1] == "dense"
    target = dict(run.series("schedule/target_sparsity", x="trainer/step"))
    assert target[2 * SPE + 1] == pytest.approx(0.8) and target[1] == 0


def test_both_validation_curves_at_their_epochs(acdc_run):
    *_, run = acdc_run
    dense = run.series("val/dense/top1", x="epoch")
    sparse = run.series("val/sparse/top1", x="epoch")
    # evaluation at the end of each epoch, named after the phase that epoch ran in
    assert [e for e, _ in dense] == [1.0, 2.0, 4.0]
    assert [e for e, _ in sparse] == [3.0, 5.0, 6.0]
    for _, top1 in dense + sparse:
        assert 0.0 <= top1 <= 100.0
    assert {k for k in run.keys() if k.startswith("val/")} == {
        f"val/{p}/{m}" for p in ("dense", "sparse") for m in ("top1", "top5", "loss")
    }


def test_logged_layer_sparsity_is_what_the_model_holds(acdc_run):
    run_dir, *_, run = acdc_run
    final = torch.load(run_dir / "checkpoints" / "final.pt", map_location="cpu", weights_only=False)
    masks = final["sparsifier"]["masks"]
    assert masks, "the run must end in a compressed phase"
    updates = [r for r in run.history if "sparsity/global" in r]
    # masks computed at epochs 2, 4 (after the dense phase) and 5 (end_epoch)
    assert [r["epoch"] for r in updates] == [2.0, 4.0, 5.0]
    last = updates[-1]
    for name, mask in masks.items():
        zero_fraction = (final["model"][name] == 0).float().mean().item()
        mask_sparsity = 1.0 - mask.float().mean().item()
        assert last[f"sparsity/layer/{layer_key(name)}"] == pytest.approx(mask_sparsity, abs=1e-6)
        assert zero_fraction == pytest.approx(mask_sparsity, abs=1e-6)
    total = sum(m.numel() for m in masks.values())
    kept = sum(int(m.sum()) for m in masks.values())
    assert last["sparsity/global"] == pytest.approx(1 - kept / total, abs=1e-6)
    table = run.load_table(last["sparsity/layers"])
    assert [r["param"] for r in table] == list(masks)
    # mask stability: none for the first masks, measured against the previous compressed phase after
    assert "sparsity/mask_changed" not in updates[0]
    assert 0.0 <= updates[1]["sparsity/mask_changed"] <= 1.0
    assert (run_dir / "plots" / f"layer_sparsity_step{5 * SPE:08d}.png").exists()


def test_summary_holds_the_pair(acdc_run):
    run_dir, _, second, *_, run = acdc_run
    s = run.summary
    dense = dict(run.series("val/dense/top1", x="epoch"))
    sparse = dict(run.series("val/sparse/top1", x="epoch"))
    assert s["dense_top1"] == pytest.approx(dense[4.0])  # the dense member: end of the last dense phase
    assert s["sparse_top1"] == pytest.approx(sparse[6.0])
    assert s["dense_sparse_gap"] == pytest.approx(s["dense_top1"] - s["sparse_top1"])
    assert s["params_total"] == second["params_total"] and s["params_nonzero"] == second["params_nonzero"]
    assert s["checkpoints"]["dense"] == str(run_dir / "checkpoints" / "dense.pt")
    assert "sparse_int8_top1" not in s  # no QAT in this run
    # compute accounting reaches W&B as summary.json has it (counted in tests/unit/test_compute.py)
    assert s["pair_dense_top1"] == s["dense_top1"]
    for key in ("inference_flops", "inference_flops_ratio", "training_flops", "training_flops_ratio"):
        assert s[key] == pytest.approx(second[key])
    assert 0 < s["inference_flops_ratio"] < s["training_flops_ratio"] < 1
    assert run.media_file(s["plots/training_curve"]).stat().st_size > 1000
    pairs = [a for a in run.artifacts if a["type"] == "model"]
    assert pairs[-1]["name"] == f"acdc-pair-{run.run_id}"
    assert sorted(pairs[-1]["files"]) == ["dense.pt", "final.pt"]


def test_config_is_logged(acdc_run):
    *_, run = acdc_run
    assert run.config["sparsity"]["sparsity"] == pytest.approx(0.8)
    assert run.config["sparsity"]["update_frequency"] == pytest.approx(1.0)
    assert run.config["trainer"]["epochs"] == EPOCHS
    assert run.config["experiment_name"] == "digits_acdc"
    assert "sparsity.sparsity=0.8" in run.config["overrides"]
