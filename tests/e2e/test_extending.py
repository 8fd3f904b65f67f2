"""Extending is registering (issue 23): a sparsity method with its own schedule and mask rule, a
logger, and a model given the usual Hydra way, all from tests/support/toy/ alone (a module and its
YAML files, no edit of the package), train through acdc-train, resume, evaluate from the run's
files and export, as a user's own variants would."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import cli, evaluate_checkpoint, load_state, run_cli, small_overrides

TOY = Path(__file__).resolve().parents[1] / "support" / "toy"
EPOCHS, STOP = 2, 30  # digits: 22 steps per epoch; the one-shot prune at epoch 1 (step 22), stop after it
TOY_RUN = [
    f"hydra.searchpath=[file://{TOY / 'configs'}]",
    "model=tiny",
    "sparsity=one_shot",
    "logger=json_lines",
    f"trainer.epochs={EPOCHS}",
]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(TOY), os.environ.get("PYTHONPATH")]))}


def _run(command: str, args: list) -> subprocess.CompletedProcess:
    proc = run_cli(command, *args, env=_env(), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _train(run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    return _run("acdc-train", [*small_overrides(), *TOY_RUN, f"hydra.run.dir={run_dir}", *extra])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A run stopped at step 30 (after the prune) and resumed to its end, and the same run uninterrupted."""
    root = tmp_path_factory.mktemp("extending")
    resumed, whole = root / "resumed", root / "whole"
    # the uninterrupted run beside the stop and the resume: one torch thread each, two CPUs
    args = [*small_overrides(), *TOY_RUN, f"hydra.run.dir={whole}"]
    beside = subprocess.Popen([cli("acdc-train"), *args], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert "stopped at step 30" in _train(resumed, f"trainer.max_steps={STOP}").stdout
        _train(resumed)
        out, _ = beside.communicate(timeout=600)
    finally:
        if beside.poll() is None:
            beside.kill()
    assert beside.returncode == 0, out[-3000:]
    return resumed, whole


def test_toy_variants_train_with_their_own_rules(runs):
    resumed, _ = runs
    summary = json.loads((resumed / "summary.json").read_text())
    # the method's name is its module's; its own target and mask type are reported
    assert (summary["method"], summary["mask_type"], summary["sparsity_target"]) == ("toy_parts", "prefix", 0.5)
    assert summary["steps"] == EPOCHS * 22 and summary["resumed_at_steps"] == [STOP]
    state = load_state(resumed / "checkpoints" / "final.pt")
    assert state["config"]["model"]["_target_"] == "toy_parts.TinyNet"
    # the toy mask rule (a prefix in flat order), not magnitude: the first half trained, the rest zero
    w = state["model"]["conv2.weight"].flatten()
    half = w.numel() // 2
    assert bool((w[half:] == 0).all()) and int((w[:half] != 0).sum()) == half
    assert bool((state["model"]["conv1.weight"] != 0).all())  # not selected: dense


def test_toy_logger_records_both_segments(runs):
    resumed, _ = runs
    lines = [json.loads(line) for line in (resumed / "records.jsonl").read_text().splitlines()]
    starts = [r for r in lines if "start" in r]
    # one logger per segment; the second continues the first's run id, from the checkpoint
    assert [r["resumed"] for r in starts] == [False, True] and starts[0]["start"] == starts[1]["start"]
    assert [r["mask_update"] for r in lines if "mask_update" in r] == [22]
    assert len([r for r in lines if "eval" in r]) >= EPOCHS
    summary = json.loads((resumed / "summary.json").read_text())
    assert lines[-1] == {"summary": summary["final_top1"]}


def test_toy_run_resumes_bit_identically(runs):
    resumed, whole = runs
    a = load_state(resumed / "checkpoints" / "final.pt")["model"]
    b = load_state(whole / "checkpoints" / "final.pt")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_toy_run_evaluates_and_exports_from_its_files(runs, monkeypatch):
    resumed, _ = runs
    monkeypatch.syspath_prepend(str(TOY))  # the model's module, as the run's own PYTHONPATH had it
    summary = json.loads((resumed / "summary.json").read_text())
    result = evaluate_checkpoint(str(resumed), "final")
    assert result["top1"] == pytest.approx(summary["final_top1"], abs=1e-9)  # the same model, rebuilt
    proc = _run("acdc-export", [f"checkpoint={resumed}", "member=final"])
    report = json.loads((resumed / "export" / "export_report.json").read_text())
    files = [Path(f["path"]) for f in report["files"]]
    assert files and all(f.suffix == ".onnx" and f.is_file() for f in files), proc.stdout[-2000:]
