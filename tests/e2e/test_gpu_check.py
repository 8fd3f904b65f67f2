"""bench/gpu_check.py's CPU path: the same code the GPU check runs, on a tiny model, with
torch.compile's dynamo-only backend standing in for inductor (the compiled-run subprocess,
its rows file and the budget guard are the GPU run's)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import REPO

SCRIPT = str(REPO / "bench" / "gpu_check.py")
KINDS = ("dense", "compressed_two_pass", "compressed_one_pass", "qat", "qat_frozen")
HOOK_PASSES = {"dense": 0, "compressed_two_pass": 2, "compressed_one_pass": 1, "qat": 1, "qat_frozen": 1}
TINY = [
    "--device",
    "cpu",
    "--model",
    "resnet_small",
    "--classes",
    "10",
    "--batch",
    "8",
    "--res",
    "32",
    "--windows",
    "2",
    "--window-s",
    "0",
    "--min-window-steps",
    "2",
    "--warmup",
    "1",
    "--pre-qat-steps",
    "10",
    "--qat-steps",
    "3",
    "--compile-backend",
    "eager",
]


def _run(args, timeout=120):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_gpu_check_runs_on_cpu(tmp_path):
    out = tmp_path / "gpu_check.json"
    proc = _run([*TINY, "--out", str(out)])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads(out.read_text())
    setup = report["setup"]
    assert report["gpu"] is None and report["machine"]["cpu_model"]
    assert setup["amp_dtype"] == "off" and setup["qat_dtype"] == "off" and setup["cudnn_benchmark"] is False
    assert setup["optimizer"] == "acdc_exp.training.setup.build_optimizer"
    assert setup["optimizer_fused"] is False and setup["nesterov"] is True and setup["momentum"] == 0.9  # fused on CUDA only
    rows = {(r["mode"], r["kind"]): r for r in report["rows"]}
    assert sorted(rows) == sorted((mode, kind) for mode in ("eager", "compiled") for kind in KINDS)
    for (mode, kind), r in rows.items():
        assert r["batch"] == 8 and r["res"] == 32 and r["hook_passes"] == HOOK_PASSES[kind], (mode, kind)
        assert r["img_per_s"] > 0 and len(r["img_per_s_windows"]) == r["windows"] == 2 and r["steps_per_window"] == 2
        assert r["spread_pct"] >= 0 and r["rel_std_pct"] >= 0
        assert r["syncs_per_step"] is None and r["sync_sites"] == []  # counted on CUDA only
        assert r["precision"] == "off"
    assert rows[("eager", "compressed_two_pass")]["mask_update_step_s"] > 0
    checks = report["checks"]
    int8 = checks["int8_vs_fake_quant"]
    assert int8["ok"] and int8["worst_frac_over_one_step"] < 0.005 and int8["top1_agreement"] >= 0.97
    assert int8["thresholds"] == {"frac_over_one_step_lt": 0.005, "top1_agreement_ge": 0.97}
    assert checks["qat_training"]["ok"] and checks["qat_training"]["fp32_without_scaler"]
    assert checks["resume"]["ok"] and checks["resume"]["max_abs_diff"] == 0.0  # CPU: bit-exact
    assert checks["deterministic"]["ok"] and checks["deterministic"]["same_masks"]
    assert report["skipped"] == [] and report["errors"] == [] and report["ok"]
    assert report["wall_s"] < report["budget_s"]
    assert "| eager | 8 | compressed_one_pass | 1 |" in proc.stdout and "| compiled | 8 | qat_frozen | 1 |" in proc.stdout
    assert "int8_vs_fake_quant: ok" in proc.stdout and "deterministic: ok" in proc.stdout


def test_gpu_check_skips_what_the_budget_cannot_hold(tmp_path):
    out = tmp_path / "gpu_check.json"
    proc = _run([*TINY, "--budget-s", "0", "--out", str(out)])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]  # skips are not failures
    report = json.loads(out.read_text())
    assert report["rows"] == [] and report["checks"] == {} and report["errors"] == []
    skipped = {s["item"] for s in report["skipped"]}
    assert {f"{mode} batch 8 {kind}" for mode in ("eager", "compiled") for kind in KINDS} <= skipped
    assert {"qat_int8", "resume", "deterministic"} <= skipped
    assert all("budget" in s["reason"] or "skipped" in s["reason"] for s in report["skipped"])
    assert "skipped: eager batch 8 dense (time budget" in proc.stdout and "int8_vs_fake_quant: skipped" in proc.stdout


def test_gpu_check_without_a_gpu_says_so():
    proc = subprocess.run(
        [sys.executable, SCRIPT], capture_output=True, text=True, timeout=120, env=dict(os.environ, CUDA_VISIBLE_DEVICES="")
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "gpu_check: error: --device cuda but no CUDA device is visible; allowed here: --device cpu"


def test_gpu_check_reads_the_reference_sparsity_as_hydra_composes_it():
    """gpu_check reads the experiment's YAML files without Hydra: they must add up to the
    composed reference config's sparsity node."""
    from omegaconf import OmegaConf

    from acdc_exp.config.compose import compose_config

    sys.path.insert(0, str(REPO / "bench"))
    try:
        from gpu_check_steps import experiment
    finally:
        sys.path.pop(0)
    composed = OmegaConf.to_container(compose_config(["experiment=resnet50_imagenet_acdc85_quant"]).sparsity, resolve=True)
    read = OmegaConf.to_container(experiment().sparsity, resolve=True)
    assert {key: composed[key] for key in read} == read
    assert {"reset_momentum", "update_frequency", "dead_channels", "params", "mask_type"} <= read.keys()
