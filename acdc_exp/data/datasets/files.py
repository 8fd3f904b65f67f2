"""``data=imagenet_ffcv``, ``data=imagenet_folder``, or any dataset given by its files: a train
and a val .beton file (``data.loader=ffcv``) or ImageFolder tree (``data.loader=folder``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple, Union

from omegaconf import MISSING

from acdc_exp.data.datasets.base import Dataset, TrainImages
from acdc_exp.data.loaders import Loader
from acdc_exp.data.settings import resolved
from acdc_exp.errors import DataError
from acdc_exp.registries import DATA, DataConfig


@dataclass
class FilesDataConfig(DataConfig):
    train_path: Optional[str] = MISSING  # .beton file (ffcv) or ImageFolder dir (folder)
    val_path: Optional[str] = MISSING
    # imagenet_ffcv: the folder acdc-data write filled, and the settings it wrote with (stored
    # max side, JPEG share, JPEG quality), which name the files (data/beton_names.py); the
    # stored max side is not max_res, the progressive-resizing ramp's end
    beton_dir: Optional[str] = None
    max_resolution: Optional[int] = None
    compress_probability: Optional[float] = None
    jpeg_quality: Optional[int] = None
    # images in the train split, when known without reading the data (acdc-schedule's steps
    # per epoch; training counts the real ones)
    train_images: Optional[int] = None


@DATA.register(schema=FilesDataConfig)
class Files(Dataset):
    def _path(self, key: str) -> Path:
        path = resolved(self.cfg, key)  # the .beton naming's own one-line error, if it has one
        if path is None or str(path).strip() == "":
            raise DataError(f"data.{key} is not set (needed for data.name={self.cfg.name})")
        return Path(os.path.expanduser(str(path)))

    def files(self, data_cache: str, loader: Loader) -> Tuple[Path, Path]:
        return self._path("train_path"), self._path("val_path")

    def train_images(self, loader: Loader) -> TrainImages:
        """From the train .beton's header; else ``data.train_images`` (a hint), saying why."""
        counted = self._beton_count(loader)
        if isinstance(counted, TrainImages):
            return counted
        missing = counted
        if self.cfg.train_images is not None:
            return TrainImages(int(self.cfg.train_images), f"data.train_images, assumed: {missing}", missing)
        return TrainImages(None, "", missing)

    def _beton_count(self, loader: Loader) -> Union[TrainImages, str]:
        """The train .beton's image count, or why it cannot be read (one line)."""
        try:
            path = resolved(self.cfg, "train_path")
        except DataError as exc:  # e.g. data.beton_dir=null: the size is unknown, not an error here
            return str(exc)
        if not path:
            return "data.train_path is not set"
        if not loader.reads_betons:
            return f"the images under {path} are not counted (data.loader={self.cfg.loader})"
        beton = Path(str(path)).expanduser()
        if not beton.is_file():
            return f"{path} not found"
        from acdc_exp.data.beton import check_beton  # ffcv and numba take seconds to load

        try:
            return TrainImages(check_beton(beton).num_samples, f"the header of {beton}")
        except DataError as exc:
            return str(exc)
