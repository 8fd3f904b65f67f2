"""``data=digits``: scikit-learn's digits as 32x32 RGB images, the embedded demo's data
(``acdc_exp/data/digits.py`` writes its files on first use)."""

from __future__ import annotations

from pathlib import Path
from typing import Tuple

from acdc_exp.data.datasets.base import BuiltInDataConfig, BuiltInDataset, TrainImages
from acdc_exp.data.loaders import Loader
from acdc_exp.registries import DATA


# demo: the embedded demo's data (its model and schedule are made for it); small_images: what
# the demo's small model suits, so data=<it> alone is no mistake (config/precheck.py)
@DATA.register(schema=BuiltInDataConfig, demo=True, small_images=True)
class Digits(BuiltInDataset):
    def files(self, data_cache: str, loader: Loader) -> Tuple[Path, Path]:
        from acdc_exp.data.digits import ensure_digits  # scikit-learn behind it

        files = ensure_digits(self.cache(data_cache))
        if loader.reads_betons:
            return files.train_beton, files.val_beton
        return files.train_dir, files.val_dir

    def train_images(self, loader: Loader) -> TrainImages:
        from acdc_exp.data.digits import TRAIN_IMAGES

        return TrainImages(TRAIN_IMAGES, "the digits train split")
