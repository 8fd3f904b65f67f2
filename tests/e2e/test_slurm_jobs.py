"""acdc-train on the real local SLURM cluster through Hydra's submitit launcher: a requeued job
that resumes to the same final weights, and two tasks of one job as one DDP run. (The 2-job
sparsity sweep with offline W&B is slurm/README.md's own, walked in tests/e2e/test_readme_walk.py.)"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from conftest import REPO, assert_same_final_weights, cli, run_cli, small_overrides
from slurm_support import wait_for_file

pytestmark = pytest.mark.slurm

SHORT = [
    "trainer.epochs=2",
    "lr_schedule.warmup_epochs=0.5",
    "sparsity.start_epoch=0",
    "sparsity.end_epoch=2",
    "sparsity.update_frequency=1",
    "trainer.num_threads=1",
    "trainer.progress=false",
    "data.num_workers=1",
]


def _job_id(sweep_dir: Path, timeout_s: float = 120) -> str:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        # submitit names a job's folder by its SLURM id: "24" alone, or "24_0" in an array
        ids = sorted(p.name.split("_")[0] for p in (sweep_dir / ".submitit").glob("[0-9]*") if p.is_dir())
        if ids:
            return ids[0]
        time.sleep(0.5)
    raise AssertionError("no submitit job dir appeared")


def test_scontrol_requeue_resumes_to_the_same_final_weights(slurm_cluster, tmp_path):
    longer = [o for o in SHORT if not o.startswith("trainer.epochs")] + ["trainer.epochs=8", "sparsity.end_epoch=6"]
    sweep_dir = tmp_path / "sweep"
    hydra = subprocess.Popen(
        [
            cli("acdc-train"),
            "-m",
            "hydra/launcher=slurm_local",
            "hydra.launcher.timeout_min=15",
            f"hydra.sweep.dir={sweep_dir}",
            "logger=none",
            *longer,
            "sparsity.sparsity=0.9",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
    )
    # the same run, uninterrupted, beside the job (it holds one of the two CPUs)
    reference = tmp_path / "reference"
    own = [o for o in longer if "num_threads" not in o and "progress" not in o]
    beside = subprocess.Popen(
        [cli("acdc-train"), *small_overrides(), *own, "sparsity.sparsity=0.9", f"hydra.run.dir={reference}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
    )
    try:
        job_id = _job_id(sweep_dir)
        last = sweep_dir / "0" / "checkpoints" / "last.pt"
        assert wait_for_file(last, timeout_s=300), "the job never wrote a checkpoint"
        for _ in range(20):  # right after start SLURM may answer "pending execution"
            rq = subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True)
            if rq.returncode == 0:
                break
            time.sleep(1)
        assert rq.returncode == 0, rq.stderr
        out, _ = hydra.communicate(timeout=900)
        reference_log, _ = beside.communicate(timeout=600)
    finally:
        for proc in (hydra, beside):
            if proc.poll() is None:
                proc.kill()
    assert hydra.returncode == 0, out[-3000:]
    assert beside.returncode == 0, reference_log[-3000:]
    summary = json.loads((sweep_dir / "0" / "summary.json").read_text())
    assert summary["resumed_at_steps"], "the requeued job did not resume from its checkpoint"
    assert summary["epochs"] == 8 and summary["steps"] == 8 * (summary["steps"] // 8)
    assert_same_final_weights(reference, sweep_dir / "0")


def test_two_tasks_of_one_slurm_job_train_as_one_ddp_run(slurm_cluster, tmp_path):
    """tasks_per_node=2: submitit's TorchDistributedEnvironment joins the two SLURM tasks into
    one gloo process group; the global batch is split between them."""
    from acdc_exp.config.compose import compose_config
    from acdc_exp.data import build_data

    sweep_dir = tmp_path / "sweep"
    proc = subprocess.run(
        [
            cli("acdc-train"),
            "-m",
            "hydra/launcher=slurm_local",
            "hydra.launcher.timeout_min=10",
            "hydra.launcher.tasks_per_node=2",
            f"hydra.sweep.dir={sweep_dir}",
            "logger=none",
            *SHORT,
            "data.batch_size=64",
            "trainer.device=cpu",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    summary = json.loads((sweep_dir / "0" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["ranks_identical"] is True
    assert (summary["global_batch_size"], summary["batch_size_per_process"]) == (64, 32)
    cfg = compose_config(["data.batch_size=64"])
    one_process = build_data(cfg.data, data_cache=str(cfg.paths.data_cache), device="cpu", seed=0)
    assert summary["steps_per_epoch"] == one_process.steps_per_epoch()
    assert summary["steps"] == 2 * one_process.steps_per_epoch()
    assert summary["final_top1"] > 20.0


def test_a_relaunched_sweep_runs_only_what_is_missing(slurm_cluster, tmp_path):
    """The same -m command after an interruption: the finished job is skipped (its summary is
    not rewritten), the killed one runs, and the collected table holds both."""
    sweep_dir = tmp_path / "sweep"
    cmd = [
        cli("acdc-train"),
        "-m",
        "hydra/launcher=slurm_local",
        "hydra.launcher.array_parallelism=1",  # one job after the other: job 1 waits for job 0
        f"hydra.sweep.dir={sweep_dir}",
        "logger=none",
        *[o for o in SHORT if not o.startswith("trainer.epochs")],
        "trainer.epochs=1",
        "sparsity.end_epoch=1",
        "sparsity.update_frequency=0.5",
        "seed=0,1",
    ]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    try:
        assert wait_for_file(sweep_dir / "0" / "summary.json", timeout_s=300), "job 0 never finished"
        job_id = _job_id(sweep_dir)
    finally:
        first.kill()  # the launcher dies; its SLURM jobs would go on, so they are killed too
        first.communicate()
    subprocess.run(["scancel", "--signal=KILL", "--full", job_id], check=True)
    subprocess.run(["scancel", job_id], check=False)
    deadline = time.time() + 60
    while time.time() < deadline and subprocess.run(["squeue", "-h", "-j", job_id], capture_output=True, text=True).stdout:
        time.sleep(0.5)
    done = (sweep_dir / "0" / "summary.json").read_text()
    assert not (sweep_dir / "1" / "summary.json").exists()

    again = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert (sweep_dir / "0" / "summary.json").read_text() == done  # not re-run
    logs = "".join(p.read_text() for p in (sweep_dir / ".submitit").rglob("*_log.out"))
    assert f"[skip] {sweep_dir / '0'} already finished this run" in logs
    assert json.loads((sweep_dir / "1" / "summary.json").read_text())["seed"] == 1
    collected = run_cli("acdc-sweep-collect", str(sweep_dir))
    assert collected.returncode == 0, collected.stderr
    rows = (sweep_dir / "sweep_summary.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].split(",")[3:5] == ["0 1", "2"]  # one cell, seeds 0 and 1
