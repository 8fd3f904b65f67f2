"""cuda_index: which CUDA ordinal a task uses, for all-GPUs-visible and one-GPU-per-task launches."""

from __future__ import annotations

import pytest

from acdc_exp.errors import ConfigError
from acdc_exp.training.distributed import cuda_index


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
