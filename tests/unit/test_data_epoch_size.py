"""Steps per epoch known before a loader opens (acdc-schedule's) are the steps the loaders give."""

from __future__ import annotations

import pytest
import torch
from data_helpers import CLASSES, TRAIN_PER_CLASS, data_config, make_synthetic_dataset

from acdc_exp.data import build_data
from acdc_exp.data.epoch_size import planned_epoch_size
from acdc_exp.data.settings import expected_train_steps

torch.set_num_threads(1)
TRAIN_IMAGES = CLASSES * TRAIN_PER_CLASS  # 24


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("synth"))


@pytest.mark.parametrize("loader", ["ffcv", "folder"])
@pytest.mark.parametrize(
    "batch_size, drop_last, limit, steps", [(5, True, None, 4), (5, False, None, 5), (5, False, 3, 3), (8, True, None, 3)]
)
def test_planned_steps_are_the_loaders(synth, tmp_path, loader, batch_size, drop_last, limit, steps):
    """ffcv: the count from the .beton's header; folder: from the data.train_images hint."""
    cfg = data_config(
        loader, synth, batch_size=batch_size, drop_last=drop_last, limit_train_batches=limit, train_images=TRAIN_IMAGES
    )
    size = planned_epoch_size(cfg)
    assert size.steps == steps
    assert (size.note is None) == (loader == "ffcv"), size.note  # the hint is an assumption
    assert f"{TRAIN_IMAGES} train images" in size.source
    data = build_data(cfg, data_cache=str(tmp_path), device=torch.device("cpu"), seed=0)
    assert data.steps_per_epoch() == steps


def test_ddp_shares():
    """Each of W ranks gets ceil(N / W) images (the samplers pad) in batches of B / W."""
    cfg = data_config("ffcv", {"train": "t", "val": "v", "tree": None}, batch_size=256, drop_last=True)
    assert expected_train_steps(cfg, 1_281_167) == 5004
    assert expected_train_steps(cfg, 1_281_167, world_size=8) == 5004
    cfg = data_config("ffcv", {"train": "t", "val": "v", "tree": None}, batch_size=8, drop_last=False)
    assert expected_train_steps(cfg, 17, world_size=4) == 3  # 5 images per rank, batches of 2


def test_unnamed_betons_fall_back_to_the_configs_image_count():
    """acdc-schedule on the reference experiment with no beton folder: the .beton naming cannot
    say where the files are, which is no error here; data.train_images gives the count."""
    from acdc_exp.config.compose import compose_config

    cfg = compose_config(["experiment=resnet50_imagenet_acdc85_quant", "data.beton_dir=null"]).data
    size = planned_epoch_size(cfg)
    assert size.steps == 1_281_167 // 256 and size.source.startswith("5004 steps per epoch: 1281167 train images")
    assert size.note is not None and "data.beton_dir" in size.note
