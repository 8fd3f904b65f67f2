"""Shared test set-up: one torch thread (2-core machines), offline W&B, a shared data cache."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent

# Environment first, so subprocesses (CLIs, SLURM jobs) inherit it too.
os.environ.setdefault("ACDC_DATA_CACHE", str(Path(tempfile.gettempdir()) / "acdc-exp-test-cache"))
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HYDRA_FULL_ERROR", "0")

import torch  # noqa: E402

torch.set_num_threads(1)


def pytest_report_header(config) -> list[str]:
    """What the suite runs on, first thing in every run's output (CI included)."""
    from acdc_exp.machine import describe, format_report

    return format_report(describe()).splitlines()


@pytest.fixture(autouse=True)
def _no_loader_outlives_its_test():
    """A test that drops a half-read FFCV loader leaves its producer thread to the garbage
    collector; collect now, so no test runs beside another test's loader thread."""
    yield
    if any(type(t).__name__ == "EpochIterator" for t in threading.enumerate()):
        gc.collect()


# tests/unit: one layer each, fast (`make test-fast` runs them, under 2 minutes); tests/e2e: they
# train, launch console scripts or processes, or build datasets (marked e2e, by their folder);
# tests/support: what both import (helpers, scripts run in a fresh process, the toy extension)
SUPPORT = Path(__file__).parent / "support"
sys.path.insert(0, str(SUPPORT))


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        if "e2e" in item.path.parent.parts[-1:]:
            item.add_marker(pytest.mark.e2e)


def cli(name: str) -> str:
    """Path of a console script of this venv."""
    return str(VENV_BIN / name)


def run_cli(name: str, *args: str, timeout: int = 300, **popen: Any) -> subprocess.CompletedProcess:
    """Run console script ``name`` of this venv with ``args`` as a user would; its exit status
    and text output (``env``, ``cwd`` as subprocess.run takes them)."""
    return subprocess.run([cli(name), *args], capture_output=True, text=True, timeout=timeout, **popen)


def one_error_line(proc: subprocess.CompletedProcess, prog: str, code: int = 2) -> str:
    """The one line ``prog: error: ...`` a refused command prints (exit ``code``, nothing else
    on stderr), without its prefix."""
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == code and len(lines) == 1, (proc.returncode, proc.stderr[-3000:])
    assert lines[0].startswith(f"{prog}: error: "), lines[0]
    return lines[0][len(f"{prog}: error: ") :]


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    d = tmp_path / "run"
    d.mkdir()
    return d


def small_overrides(run_root: Path | None = None) -> list[str]:
    """Overrides that keep an end-to-end digits run to seconds."""
    out = ["trainer.num_threads=1", "trainer.progress=false", "logger=none", "data.num_workers=1"]
    if run_root is not None:
        out.append(f"paths.runs_root={run_root}")
    return out


def evaluate_checkpoint(checkpoint: str, member: str = "final", overrides: list[str] | None = None) -> dict:
    """``acdc-eval checkpoint=... member=... <overrides>``, composed and run in-process."""
    from acdc_exp.config.compose import compose_config
    from acdc_exp.runs.evaluate import evaluate_member

    overrides = list(overrides or [])
    cfg = compose_config([*overrides, f"checkpoint={checkpoint}", f"member={member}"], config_name="eval")
    return evaluate_member(cfg, overrides)


def train(overrides: list[str], run_dir: Path) -> dict:
    """Compose like acdc-train, point the run at ``run_dir``, and train in-process."""
    from omegaconf import open_dict

    from acdc_exp.config.compose import compose_config, finalize
    from acdc_exp.runs.train import run_training

    cfg = finalize(compose_config(small_overrides() + list(overrides)))
    with open_dict(cfg):
        cfg.paths.run_dir = str(run_dir)
    return run_training(cfg)


# int8 kernels of a CPU without VNNI/AMX (AVX2's int16 pair sums), on any x86 machine
AVX2_INT8_KERNELS = {"FBGEMM_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def int8_vs_qat(args: list[str], env: dict[str, str] | None = None) -> dict:
    """tests/support/int8_vs_qat.py in a fresh process (kernel ISA set by ``env`` before torch loads)."""
    import json

    proc = subprocess.run(
        [sys.executable, str(SUPPORT / "int8_vs_qat.py"), *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def reference_betons(
    root: Path, *, classes: int, per_class: int, val_per_class: int, max_side: int, max_resolution: int
) -> tuple[Path, Path]:
    """A generated ImageNet-layout tree written to train/val .beton files through acdc-data,
    and a ResNet-50 state dict to start from as "pretrained" weights: (beton dir, weights)."""

    from acdc_exp.models import build_model

    tree, betons = root / "tree", root / "betons"
    for args in (
        [
            "synth",
            "--out",
            str(tree),
            "--classes",
            str(classes),
            "--per-class",
            str(per_class),
            "--val-per-class",
            str(val_per_class),
            "--min-side",
            "70",
            "--max-side",
            str(max_side),
        ],
        ["write", "--src", str(tree), "--out", str(betons), "--max-resolution", str(max_resolution), "--num-workers", "1"],
    ):
        out = run_cli("acdc-data", *args)
        assert out.returncode == 0, out.stderr
    pretrained = root / "resnet50_dense.pt"
    torch.manual_seed(0)
    torch.save(build_model("resnet50", num_classes=1000).state_dict(), pretrained)
    return betons, pretrained


def load_state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def assert_same_final_weights(run_a: Path, run_b: Path) -> None:
    """The two runs' final.pt hold bit-identical model states (resume/requeue checks)."""
    a = load_state(run_a / "checkpoints" / "final.pt")["model"]
    b = load_state(run_b / "checkpoints" / "final.pt")["model"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(scope="session")
def slurm_cluster() -> str:
    """Hostname of the local one-node SLURM cluster, started (and installed) on first use.
    A cluster that cannot start fails the test: a silent skip would hide the SLURM path."""
    from slurm_support import SlurmClusterError, ensure_slurm_cluster

    try:
        return ensure_slurm_cluster()
    except SlurmClusterError as exc:
        pytest.fail(str(exc), pytrace=False)


# dense [0,1), compressed from 1 (masks fixed after 2) at 90%, QAT from 4; observers freeze at
# 5 and BN statistics at 5.5, where the cosine lr is ~0.002 (frozen-BN QAT with per-tensor
# weights diverges at lr >~ 0.005 on this model, as BN-folded QAT is known to need a small lr)
QAT_RUN = [
    "trainer.epochs=6",
    "lr_schedule.warmup_epochs=0.5",
    "lr_schedule.peak_lr=0.1",
    "sparsity.start_epoch=0",
    "sparsity.end_epoch=2",
    "sparsity.update_frequency=1",
    "sparsity.sparsity=0.9",
    "quantization=qat",
    "quantization.start_epoch=4",
    "quantization.disable_observer_epoch=5",
    "quantization.freeze_bn_stats_epoch=5.5",
]

# QAT_RUN logged to W&B offline: one run that test_qat_train and test_deployment both read
DEPLOY_RUN = [
    *QAT_RUN,
    "logger=wandb",
    "logger.mode=offline",
    "trainer.num_threads=1",
    "trainer.progress=false",
    "data.num_workers=1",
]


@pytest.fixture(scope="session")
def qat_run(tmp_path_factory):
    """DEPLOY_RUN trained once per session (the logger does not change what is trained)."""
    from omegaconf import open_dict

    from acdc_exp.config.compose import compose_config, finalize
    from acdc_exp.runs.train import run_training

    run_dir = tmp_path_factory.mktemp("qat_run") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_DATA_DIR", str(run_dir.parent / "wandb_data"))
        cfg = finalize(compose_config(DEPLOY_RUN), DEPLOY_RUN)
        with open_dict(cfg):
            cfg.paths.run_dir = str(run_dir)
        summary = run_training(cfg, DEPLOY_RUN)
    return run_dir, summary


# 3 short epochs: dense [0,1), compressed [1,2) (mask recomputed again at end_epoch 2), compressed after
ACDC_SHORT = [
    "trainer.epochs=3",
    "lr_schedule.warmup_epochs=0.5",
    "sparsity.start_epoch=0",
    "sparsity.end_epoch=2",
    "sparsity.update_frequency=1",
    "sparsity.sparsity=0.8",
]


@pytest.fixture(scope="session")
def acdc_short(tmp_path_factory):
    """One uninterrupted ACDC_SHORT run, (run dir, summary): the reference resumed runs must
    reach, the pair the evaluation test reads, the one process a DDP run is compared with
    (none of them writes to it)."""
    run = tmp_path_factory.mktemp("acdc_short") / "run"
    return run, train(ACDC_SHORT, run)
