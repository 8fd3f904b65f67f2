"""The digits dataset: split, counts, pixels through the loader, the config, concurrent builds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from acdc_exp.config.schema import register_configs
from acdc_exp.data import build_data
from acdc_exp.data.beton import check_beton
from acdc_exp.data.digits import NUM_CLASSES, TOTAL, TRAIN_IMAGES, digits_arrays, digits_mean_std, ensure_digits
from acdc_exp.registries import DATA

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs" / "data"


def _config(name: str, **overrides):
    register_configs()  # the beton_path resolver of imagenet_ffcv.yaml
    return DATA.typed(OmegaConf.merge(OmegaConf.load(CONFIGS / f"{name}.yaml"), overrides))


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return ensure_digits(tmp_path_factory.mktemp("cache") / "digits")


def test_counts_and_stratified_split(digits):
    n_train = check_beton(digits.train_beton).num_samples
    n_val = check_beton(digits.val_beton).num_samples
    assert n_train + n_val == TOTAL == 1797 and n_val == 360 and n_train == TRAIN_IMAGES
    per_class = {
        split: [len(list((d / str(c)).glob("*.png"))) for c in range(NUM_CLASSES)]
        for split, d in (("train", digits.train_dir), ("val", digits.val_dir))
    }
    assert sum(per_class["train"]) == n_train and sum(per_class["val"]) == n_val
    for train, val in zip(per_class["train"], per_class["val"]):
        # stratified: every class keeps ~20% for val; classes are balanced (174..183 each)
        assert abs(val - 0.2 * (train + val)) <= 1
        assert 170 <= train + val <= 185


def test_built_once(digits):
    stamp = digits.train_beton.stat().st_mtime_ns
    again = ensure_digits(digits.root)
    assert again == digits and digits.train_beton.stat().st_mtime_ns == stamp


def test_loader_returns_the_digit_pixels_unchanged(digits, tmp_path):
    """digits config: no crop, no flip, 32 -> 32 center "crop" keeps every pixel."""
    cfg = _config("digits", cache_dir=str(digits.root), limit_val_batches=1)
    dm = build_data(cfg, data_cache=str(tmp_path), device=torch.device("cpu"), seed=0)
    assert dm.num_classes == 10 and dm.steps_per_epoch() == 1437 // 64
    _, _, x_val, y_val = digits_arrays()
    order = np.argsort(y_val, kind="stable")  # tree order: class folders, then file index
    images, labels = next(iter(dm.val_batches()))
    assert labels.tolist() == y_val[order][: len(labels)].tolist()
    want = torch.from_numpy(x_val[order][: len(labels)])
    assert torch.equal(images[:, 0], want) and torch.equal(images[:, 2], want)
    train_images, train_labels = next(iter(dm.train_batches(0)))
    dm.close()
    assert train_images.shape == (64, 3, 32, 32)
    x_train, y_train, _, _ = digits_arrays()
    # each train image is one of the originals (no augmentation)
    originals = {bytes(x) for x in x_train}
    assert all(bytes(img[0].numpy()) in originals for img in train_images)


def test_config_stats_are_the_train_pixel_stats():
    mean, std = digits_mean_std()
    cfg = _config("digits")
    assert np.allclose(cfg.mean, [mean] * 3, atol=1e-3)
    assert np.allclose(cfg.std, [std] * 3, atol=1e-3)


@pytest.mark.parametrize("name", ["digits", "imagenet_ffcv", "imagenet_folder"])
def test_data_configs_merge_into_schema(name, monkeypatch):
    monkeypatch.setenv("IMAGENET_BETON_DIR", "/betons")
    monkeypatch.setenv("IMAGENET_DIR", "/imagenet")
    cfg = _config(name)
    from acdc_exp.data.settings import validate_data_config

    validate_data_config(cfg)
    if name == "imagenet_ffcv":
        assert cfg.train_path == "/betons/train_500_0.50_90.beton" and cfg.val_res == 224
        assert cfg.val_path == "/betons/val_500_0.50_90.beton" and cfg.train_images == 1281167
    if name == "imagenet_folder":
        assert cfg.val_path == "/imagenet/val" and cfg.loader == "folder"


@pytest.mark.timeout(300)
def test_two_processes_building_at_once(tmp_path):
    """Two jobs of a sweep start together: one builds, the other waits, both succeed."""
    cache = tmp_path / "digits"
    code = "import sys; from acdc_exp.data.digits import ensure_digits; f = ensure_digits(sys.argv[1]); print(f.train_beton)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(cache)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert check_beton(cache / "train.beton").num_samples == 1437
    assert sorted(p.name for p in cache.iterdir()) == [".lock", "train.beton", "tree", "val.beton"]
