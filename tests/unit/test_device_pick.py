"""cuda_index: which CUDA ordinal a task uses, for all-GPUs-visible and one-GPU-per-task launches."""

from __future__ import annotations

import os

import pytest
import torch
from conftest import run_cli, small_overrides

from acdc_exp.errors import ConfigError
from acdc_exp.training.distributed import cuda_index
from acdc_exp.training.setup import gpus_granted, resolve_device


@pytest.mark.parametrize("local_rank,visible", [(0, 1), (0, 4), (1, 4), (3, 4), (7, 8)])
def test_local_rank_within_the_visible_devices_is_the_ordinal(local_rank, visible):
    assert cuda_index(local_rank, visible) == local_rank


@pytest.mark.parametrize("local_rank", [1, 3, 7])
def test_one_visible_device_per_task_is_ordinal_zero(local_rank):
    # SLURM --gpus-per-task=1: every task sees only its own GPU, as cuda:0
    assert cuda_index(local_rank, 1, visible_devices=str(local_rank)) == 0


@pytest.mark.parametrize("local_rank,visible", [(2, 2), (5, 4), (1, 0), (0, 0), (-1, 4)])
def test_more_ranks_than_visible_devices_is_a_config_error(local_rank, visible):
    with pytest.raises(ConfigError) as err:
        cuda_index(local_rank, visible, visible_devices="0,1")
    message = str(err.value)
    assert "\n" not in message
    assert f"local_rank={local_rank}" in message
    assert f"{visible} CUDA device(s) visible" in message
    assert "CUDA_VISIBLE_DEVICES=0,1" in message


def test_message_reads_the_environment_by_default(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5")
    with pytest.raises(ConfigError, match=r"CUDA_VISIBLE_DEVICES=4,5"):
        cuda_index(2, 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    with pytest.raises(ConfigError, match=r"CUDA_VISIBLE_DEVICES=<unset>"):
        cuda_index(2, 2)


# --- trainer.device: a job that was given GPUs never runs on the CPU --------------------------

needs_no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA path")


@pytest.mark.parametrize(
    "env,granted",
    [
        ({}, None),
        ({"SLURM_GPUS_ON_NODE": "0"}, None),
        ({"SLURM_JOB_ID": "7", "SLURM_CPUS_ON_NODE": "10"}, None),
        ({"SLURM_GPUS_ON_NODE": "8"}, "SLURM_GPUS_ON_NODE=8"),
        ({"SLURM_STEP_GPUS": "0,1"}, "SLURM_STEP_GPUS=0,1"),
    ],
)
def test_gpus_granted_reads_what_slurm_sets(env, granted):
    assert gpus_granted(env) == granted


@needs_no_cuda
def test_auto_falls_back_to_cpu_only_when_no_gpus_were_granted():
    assert resolve_device("auto", {}) == torch.device("cpu")
    assert resolve_device("cpu", {"SLURM_GPUS_ON_NODE": "8"}) == torch.device("cpu")  # explicit cpu is allowed
    with pytest.raises(ConfigError) as err:
        resolve_device("auto", {"SLURM_GPUS_ON_NODE": "8"})
    message = str(err.value)
    assert "\n" not in message
    assert "SLURM gave this job GPUs (SLURM_GPUS_ON_NODE=8) but CUDA is unusable" in message
    assert "trainer.device=cpu" in message
    with pytest.raises(ConfigError, match="trainer.device=cuda but CUDA is unusable"):
        resolve_device("cuda", {})


@needs_no_cuda
def test_a_gpu_job_without_cuda_stops_in_one_line_before_training(tmp_path):
    env = {**os.environ, "SLURM_GPUS_ON_NODE": "8", "OMP_NUM_THREADS": "1"}
    run = tmp_path / "run"
    proc = run_cli("acdc-train", *small_overrides(tmp_path), f"hydra.run.dir={run}", env=env)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("acdc-train: error: SLURM gave this job GPUs (SLURM_GPUS_ON_NODE=8)"), proc.stderr[-2000:]
    assert not (run / "checkpoints").exists()
