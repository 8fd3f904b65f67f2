"""QAT at the end of AC/DC through the trainer on digits: accuracy, masks in int8, freezes in
the saved state, resume mid-QAT, and acdc-eval / acdc-export on the finished run."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import AVX2_INT8_KERNELS, assert_same_final_weights, int8_vs_qat, load_state, one_error_line, run_cli, train

# qat_run: conftest's QAT_RUN (logged to W&B offline), trained once per session


def test_qat_keeps_top1_of_the_sparse_float_model(qat_run):
    from acdc_exp.data import build_data
    from acdc_exp.quantization.float_view import float_view
    from acdc_exp.runs.evaluate import compose_for_member as _compose
    from acdc_exp.runs.members import load_member
    from acdc_exp.training.metrics import evaluate

    run_dir, s = qat_run
    assert s["final_phase"] == "qat"
    assert s["qat_top1"] >= s["sparse_top1"] - 1.0  # QAT after the last compressed evaluation
    assert abs(s["sparse_int8_top1"] - s["qat_top1"]) <= 1.0  # int8 = fake quant, within a point
    # the same weights without fake quantization: quantization itself costs < 1 point
    model, _, config = load_member(str(run_dir), "final")
    cfg = _compose([], config)
    data = build_data(cfg.data, data_cache=str(cfg.paths.data_cache), device=torch.device("cpu"), seed=0)
    fp = evaluate(float_view(model), data.val_batches(), data.prepare, torch.device("cpu"))
    assert abs(s["sparse_int8_top1"] - fp["top1"]) <= 1.0
    assert s["sparse_int8_top1"] > 85.0


@pytest.mark.parametrize("kernels", ["this_cpu", "avx2"])
def test_int8_model_computes_what_its_qat_model_computes(qat_run, kernels):
    """Layer by layer on the whole val set, with this CPU's int8 kernels and with AVX2-only
    ones (no VNNI: int16 pair sums): every int8 output within one step of the fake-quantized
    one, bar a few that inherit a one-step difference from the layer before."""
    run_dir, s = qat_run
    r = int8_vs_qat(["run", str(run_dir)], AVX2_INT8_KERNELS if kernels == "avx2" else None)
    assert r["qat_top1"] == pytest.approx(s["qat_top1"], abs=1e-4)  # the same model and data as the run
    worst = max(r["layers"], key=lambda row: row["frac_over_one_step"])
    assert worst["frac_over_one_step"] < 0.005, worst
    assert r["top1_agreement"] >= 0.97
    assert abs(r["int8_top1"] - r["qat_top1"]) <= 1.0
    assert s["int8_exact_on_this_cpu"] is True  # reduce_range (the default) is exact on every CPU


def test_saved_qat_state_keeps_masks_and_frozen_observers(qat_run):
    run_dir, s = qat_run
    final = load_state(run_dir / "checkpoints" / "final.pt")
    assert final["quantizer"]["prepared"]
    flags = [v for k, v in final["model"].items() if k.endswith("observer_enabled")]
    assert flags and all(int(v[0]) == 0 for v in flags)
    masks = final["sparsifier"]["masks"]
    assert masks and abs(s["sparsity_pruned_layers"] - 0.9) < 0.01
    int8 = load_state(run_dir / "checkpoints" / "final_int8.pt")["model"]
    for name, mask in masks.items():
        assert torch.equal(final["model"][name][~mask], torch.zeros(int((~mask).sum())))
        w = int8[name]  # same key: the int8 conv keeps the layer's name
        assert w.is_quantized and torch.equal(w.int_repr()[~mask], torch.zeros(int((~mask).sum()), dtype=torch.int8))


def test_acdc_eval_reproduces_the_run_metrics(qat_run):
    from conftest import evaluate_checkpoint

    run_dir, s = qat_run
    int8 = evaluate_checkpoint(str(run_dir), "int8")
    assert int8["kind"] == "int8" and int8["top1"] == pytest.approx(s["sparse_int8_top1"])
    fq = evaluate_checkpoint(str(run_dir), "final")
    assert fq["kind"] == "fake-quant (QAT)" and fq["top1"] == pytest.approx(s["qat_top1"])
    dense = evaluate_checkpoint(str(run_dir), "dense", ["data.limit_val_batches=1"])
    assert dense["kind"] == "float" and dense["samples"] == 256
    # pruned zeros compress; the dense member barely does
    assert int8["size"]["gzip_bytes"] < 0.5 * int8["size"]["raw_bytes"]
    assert dense["size"]["gzip_bytes"] > 0.8 * dense["size"]["raw_bytes"]


def test_acdc_eval_cli_takes_hydra_overrides(qat_run, tmp_path):
    run_dir, s = qat_run
    args = [f"checkpoint={run_dir}", "member=dense", "data.limit_val_batches=1", "data.val_batch_size=100", "trainer.device=cpu"]
    proc = run_cli("acdc-eval", *args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "(dense member, float, cpu) on digits val: 100 images" in proc.stdout  # the overrides took effect
    assert list(tmp_path.iterdir()) == []  # evaluation writes nothing (no Hydra run dir, no log file)
    shown = run_cli("acdc-eval", *args, "--cfg", "job")
    assert "member: dense" in shown.stdout and "limit_val_batches: 1" in shown.stdout
    helped = run_cli("acdc-eval", "--help")
    assert "== Configuration groups ==" in helped.stdout and "sparsity: acdc" in helped.stdout


def test_acdc_export_of_the_run_agrees_on_real_images(qat_run, tmp_path):
    from acdc_exp.runs.export import run_export

    run_dir, _ = qat_run
    report = run_export(str(run_dir), member="final", out=str(tmp_path), batch=64, inputs="val")
    assert report["all_ok"]
    files = {f["kind"]: f for f in report["files"]}
    assert set(files) == {"fp32", "qdq"}
    assert files["fp32"]["agreement"]["top1_agreement"] == 1.0
    assert files["qdq"]["agreement"]["top1_agreement"] >= 0.95
    on_disk = json.loads((tmp_path / "export_report.json").read_text())
    assert [f["path"] for f in on_disk["files"]] == [f["path"] for f in report["files"]]
    # per-layer sparsity read back from the ONNX initializers equals the model's
    final = load_state(run_dir / "checkpoints" / "final.pt")
    for name in final["sparsifier"]["names"]:
        layer = name.rsplit(".", 1)[0]
        w = final["model"][name]
        want = int((w == 0).sum()) / w.numel()
        rows = {r["layer"]: r for r in files["fp32"]["layers"]}
        assert rows[layer]["sparsity"] == pytest.approx(want, abs=1e-9)
        qrows = {r["layer"]: r for r in files["qdq"]["layers"]}
        assert qrows[layer]["sparsity"] >= want  # int8 rounding can only add zeros
        assert qrows[layer]["sparsity"] == pytest.approx(files["qdq"]["model_sparsity"][layer], abs=1e-9)


# a cheaper run for resume: 3 epochs of 6 batches, QAT from epoch 1, freezes inside epoch 2
RESUME_RUN = [
    "trainer.epochs=3",
    "data.limit_train_batches=6",
    "data.limit_val_batches=1",
    "lr_schedule.warmup_epochs=0.5",
    "lr_schedule.peak_lr=0.05",
    "sparsity.start_epoch=0",
    "sparsity.end_epoch=1",
    "sparsity.update_frequency=1",
    "sparsity.sparsity=0.8",
    "quantization=qat",
    "quantization.start_epoch=1",
    "quantization.disable_observer_epoch=2",
    "quantization.freeze_bn_stats_epoch=2.5",
]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    full = tmp_path_factory.mktemp("qat_full") / "run"
    train(RESUME_RUN, full)
    return full


@pytest.mark.parametrize("stop", [9, 16])  # mid-QAT before the freezes, and after both
def test_resume_mid_qat_matches_uninterrupted(uninterrupted, tmp_path, stop):
    full, part = uninterrupted, tmp_path / "part"
    train(RESUME_RUN + [f"trainer.max_steps={stop}"], part)
    state = load_state(part / "checkpoints" / "last.pt")
    assert state["step"] == stop and state["quantizer"]["prepared"]
    train(RESUME_RUN + ["trainer.resume=auto"], part)
    assert_same_final_weights(full, part)


def test_cli_errors_are_one_line():
    for args, needle in [
        (["acdc-eval", "checkpoint=/nonexistent/run"], "does not exist"),
        (["acdc-eval"], "checkpoint= is required"),
        (["acdc-eval", "checkpoint=/tmp", "member=best"], "member='best'"),
        (["acdc-export", "checkpoint=/nonexistent/run"], "does not exist"),
        (["acdc-export", "checkpoint=/tmp", "format=tflite"], "format='tflite'"),
        (["acdc-export", "checkpoint=/tmp", "colour=red"], "Key 'colour' not in 'ExportConfig'"),
        (["acdc-eval", "checkpoint=/tmp", "trainer.epochz=3"], "Key 'epochz' not in 'TrainerConfig'"),
    ]:
        assert needle in one_error_line(run_cli(*args), args[0]), args
