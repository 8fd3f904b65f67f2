"""Every SLURM launcher preset can start the reference job: the global train and val batches
split over the preset's ranks (nodes x tasks_per_node, one per GPU) as ``build_data`` splits
them on each rank. Presets are found in configs/hydra/launcher/, so a new one is covered."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import REPO, run_cli
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from acdc_exp.config.compose import compose_config, config_dir, finalize
from acdc_exp.config.precheck import Launch
from acdc_exp.config.schema import register_configs
from acdc_exp.data.settings import batches_for_rank, val_batch_for_rank, validate_data_config
from acdc_exp.errors import DataError

REFERENCE = "experiment=resnet50_imagenet_acdc85_quant"
PRESETS = sorted(p.stem for p in (Path(config_dir()) / "hydra" / "launcher").glob("*.yaml"))


def _launch(preset: str) -> Launch:
    """What the preset gives a job as Hydra composes it (defaults chains such as
    slurm_multinode -> slurm_1node_8gpu included), read as the multirun precheck reads it."""
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        hydra_cfg = compose("train", [REFERENCE, f"hydra/launcher={preset}"], return_hydra_config=True).hydra
    GlobalHydra.instance().clear()
    return Launch.of(hydra_cfg)


def test_presets_are_discovered():
    assert {"slurm_local", "slurm_1node_8gpu", "slurm_multinode"} <= set(PRESETS)


@pytest.mark.parametrize("preset", PRESETS)
def test_reference_job_batches_split_over_every_rank_of_the_preset(preset):
    launch = _launch(preset)
    if launch.gpus:  # one DDP rank per GPU: the world size is the GPU count
        assert launch.ranks == launch.gpus, launch
    world = launch.ranks
    cfg = finalize(compose_config([REFERENCE, f"hydra/launcher={preset}"]))  # what the job validates
    validate_data_config(cfg.data)
    shares = [batches_for_rank(cfg.data, rank, world) for rank in range(world)]
    assert {train for train, _ in shares} == {cfg.data.batch_size // world}, preset
    vals = [val for _, val in shares]
    assert sum(vals) == cfg.data.val_batch_size and min(vals) >= 1 and max(vals) - min(vals) <= 1, (preset, vals)


def test_reference_job_config_through_the_cli_on_the_multinode_preset():
    proc = run_cli("acdc-train", REFERENCE, "hydra/launcher=slurm_multinode", "--cfg", "job", cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = yaml.safe_load(proc.stdout)["data"]
    assert (data["batch_size"], data["val_batch_size"]) == (256, 1000)


def test_uneven_val_split():
    shares = [val_batch_for_rank(1000, r, 32) for r in range(32)]
    assert shares == [32] * 8 + [31] * 24 and sum(shares) == 1000
    shares = [val_batch_for_rank(1000, r, 16) for r in range(16)]
    assert shares == [63] * 8 + [62] * 8 and sum(shares) == 1000
    assert [val_batch_for_rank(8, r, 8) for r in range(8)] == [1] * 8
    assert val_batch_for_rank(5, 0, 1) == 5
    with pytest.raises(DataError) as exc:
        val_batch_for_rank(7, 0, 8)
    assert str(exc.value) == (
        "data.val_batch_size=7 is the global batch and is smaller than the 8 processes; "
        "allowed: at least 8 (one image per process)"
    )
    with pytest.raises(ValueError, match="rank 8 is outside 0..7"):
        val_batch_for_rank(16, 8, 8)
