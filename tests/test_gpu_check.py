"""bench/gpu_check.py's CPU path: the same code the GPU check runs, on a tiny model."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import REPO


def test_gpu_check_runs_on_cpu(tmp_path):
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "gpu_check.py"),
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
            "--steps",
            "2",
            "--warmup",
            "1",
            "--no-compile",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["setup"]["amp_dtype"] == "off" and report["gpu"] is None
    row = report["eager"]["32"]
    assert row["dense_img_per_s"] > 0 and row["compressed_img_per_s"] > 0
    assert report["qat_int8"]["masks_hold_in_qat"] and report["qat_int8"]["int8_top1_agreement"] >= 0.9
    assert report["resume"]["ok"] and report["resume"]["max_abs_diff"] == 0.0  # CPU: bit-exact
    assert report["deterministic"]["ok"]
    assert "| eager | 32 |" in proc.stdout and "deterministic: ok" in proc.stdout


def test_gpu_check_without_a_gpu_says_so():
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu_check.py")],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, CUDA_VISIBLE_DEVICES=""),
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "gpu_check: error: --device cuda but no CUDA device is visible; allowed here: --device cpu"
