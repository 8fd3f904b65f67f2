"""Resumes cannot cross runs (issue 20, item 3): every checkpoint carries the run's fingerprint,
a resume refuses another run's state in one line naming the first differing key (unless
trainer.resume_force=true), and torchrun's shared default rendezvous id is refused."""

from __future__ import annotations

import hashlib
import os

import pytest
from conftest import ACDC_SHORT, load_state, one_error_line, run_cli, small_overrides, train

from acdc_exp.config.compose import compose_config
from acdc_exp.config.schema import torchrun_run_id
from acdc_exp.errors import CheckpointError, ConfigError
from acdc_exp.training.fingerprint import first_difference, run_fingerprint

STOP = 30  # inside epoch 2 (22 steps per epoch)


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("identity") / "run"
    run_dir.mkdir()
    out = train([*ACDC_SHORT, f"trainer.max_steps={STOP}"], run_dir)
    assert out.get("interrupted")
    return run_dir


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_checkpoint_carries_the_fingerprint_of_what_defines_the_run(stopped_run):
    state = load_state(stopped_run / "checkpoints" / "last.pt")
    fp = state["fingerprint"]
    assert fp["sparsity.sparsity"] == 0.8 and fp["seed"] == 0 and fp["trainer.epochs"] == 3
    assert fp["data.batch_size"] == state["config"]["data"]["batch_size"] and "model._target_" in fp
    # where files are, how data loads and logs: not part of it
    assert not {"data.num_workers", "data.train_path", "data.cache_dir", "model.weights"} & set(fp)
    assert not any(k.startswith(("paths.", "logger.")) for k in fp)


def test_resume_refuses_another_runs_checkpoint_and_keeps_it(stopped_run):
    last = stopped_run / "checkpoints" / "last.pt"
    before = _digest(last)
    with pytest.raises(CheckpointError, match=r"sparsity\.sparsity is 0\.8 there, 0\.9 here") as info:
        train([*ACDC_SHORT, "sparsity.sparsity=0.9"], stopped_run)
    assert "\n" not in str(info.value) and "trainer.resume_force=true" in str(info.value)
    assert _digest(last) == before


def test_cli_refusal_is_one_line_and_exit_2(stopped_run):
    proc = run_cli("acdc-train", *small_overrides(), *ACDC_SHORT, "seed=5", f"hydra.run.dir={stopped_run}")
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert errors == [
        f"acdc-train: error: trainer.resume: {stopped_run / 'checkpoints' / 'last.pt'} belongs to another run "
        "(seed is 0 there, 5 here); start a new run dir, trainer.resume=never, or trainer.resume_force=true to continue it anyway"
    ], proc.stderr[-2000:]


def test_loading_settings_do_not_change_the_fingerprint():
    a = run_fingerprint(compose_config(small_overrides()))
    b = run_fingerprint(compose_config([*small_overrides(), "data.num_workers=3", "data.val_batch_size=7", "logger=console"]))
    assert first_difference(a, b) is None
    c = run_fingerprint(compose_config([*small_overrides(), "optimizer.momentum=0.5"]))
    assert first_difference(a, c) == "optimizer.momentum is 0.9 there, 0.5 here"


def test_resume_force_continues_a_differing_checkpoint(stopped_run, tmp_path):
    import shutil

    run = tmp_path / "forced"
    shutil.copytree(stopped_run, run)
    summary = train([*ACDC_SHORT, "trainer.max_steps=40", "optimizer.momentum=0.8", "trainer.resume_force=true"], run)
    assert summary.get("interrupted") and summary["step"] == 40
    assert load_state(run / "checkpoints" / "last.pt")["fingerprint"]["optimizer.momentum"] == 0.8


def test_torchrun_default_rendezvous_id_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job42")
    assert torchrun_run_id() == "job42"
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")
    with pytest.raises(ConfigError, match="--rdzv-id"):
        torchrun_run_id()
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert torchrun_run_id() is None
    env = dict(os.environ, WORLD_SIZE="2", RANK="0", TORCHELASTIC_RUN_ID="none")
    proc = run_cli("acdc-train", env=env, cwd=tmp_path)
    assert "TORCHELASTIC_RUN_ID=none" in one_error_line(proc, "acdc-train") and not (tmp_path / "runs").exists()


def test_keys_one_side_lacks_do_not_count():
    """A checkpoint written before a schema key existed (or after one was removed) still resumes."""
    assert first_difference({"seed": 0}, {"seed": 0, "optimizer.fused": None}) is None
    assert first_difference({"seed": 0, "gone": 1}, {"seed": 1}) == "seed is 0 there, 1 here"
