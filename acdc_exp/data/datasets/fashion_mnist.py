"""``data=fashion_mnist``: Fashion-MNIST from the Debian package dataset-fashion-mnist, written
once into train/val/test .beton files (``acdc_exp/data/fashion_mnist.py``): train = the first
55,000 training images, val = the last 5,000 (the holdout every tuning choice uses), test =
the 10,000 test images."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Tuple

from omegaconf import MISSING

from acdc_exp.data.datasets.base import BuiltInDataConfig, BuiltInDataset, TrainImages
from acdc_exp.data.loaders import LOADERS, Loader
from acdc_exp.errors import DataError
from acdc_exp.registries import DATA


@dataclass
class FashionMnistDataConfig(BuiltInDataConfig):
    # the folder holding the four gzip IDX files (the Debian package's by default)
    source_dir: str = MISSING
    # the last this-many training images form the val split (5,000: Fashion-MNIST's usual holdout)
    holdout: int = MISSING


@DATA.register(schema=FashionMnistDataConfig, small_images=True)
class FashionMnist(BuiltInDataset):
    # val: the holdout (tuning); test: the test set, reported once per study with frozen settings
    splits = ("val", "test")

    def files(self, data_cache: str, loader: Loader) -> Tuple[Path, Path]:
        from acdc_exp.data.fashion_mnist import ensure_fashion_mnist  # ffcv behind it

        if not loader.reads_betons:
            readers = ", ".join(name for name, kind in LOADERS.items() if kind.reads_betons)
            raise DataError(f"data.loader={self.cfg.loader!r}: data.name={self.cfg.name} is .beton files; allowed: {readers}")
        betons = ensure_fashion_mnist(self.cfg.source_dir, self.cache(data_cache), int(self.cfg.holdout)).betons
        return betons["train"], betons[self.cfg.eval_split]

    def train_images(self, loader: Loader) -> TrainImages:
        from acdc_exp.data.fashion_mnist import train_split_size

        count = train_split_size(self.cfg.source_dir, int(self.cfg.holdout))
        return TrainImages(count, "Fashion-MNIST's train split (IDX header)")
