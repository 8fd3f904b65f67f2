"""What every dataset variant does: check its values, say which splits it has, give the files
the loaders read, and count its train images when that needs no loader.

A variant is chosen by ``data._target_``. Building one is instant (no file is touched):
``files`` builds a built-in dataset's .beton files on first use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Tuple

from omegaconf import MISSING

from acdc_exp.data.loaders import Loader
from acdc_exp.errors import DataError
from acdc_exp.registries import DataConfig
from acdc_exp.registry import variant_of


@dataclass
class BuiltInDataConfig(DataConfig):
    """A dataset the framework writes itself (digits, Fashion-MNIST)."""

    # where its generated files are cached; null: <paths.data_cache>/<its name>
    cache_dir: Optional[str] = MISSING


@dataclass(frozen=True)
class TrainImages:
    count: Optional[int]  # None: not known without opening a loader
    origin: str  # where the count came from, one line
    missing: Optional[str] = None  # why it was not read from the data (a hint was used, or nothing)


class Dataset:
    """A dataset variant; ``splits`` are the ones ``data.eval_split`` may name."""

    splits: Tuple[str, ...] = ("val",)

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        if cfg.eval_split not in self.splits:
            raise DataError(
                f"data.eval_split={cfg.eval_split!r} is not a split of data.name={cfg.name}; allowed: {', '.join(self.splits)}"
            )

    def files(self, data_cache: str, loader: Loader) -> Tuple[Path, Path]:
        """(train, evaluated) files or folders, in the form ``loader`` reads."""
        raise NotImplementedError

    def train_images(self, loader: Loader) -> TrainImages:
        """The train split's image count when known without opening a loader."""
        raise NotImplementedError


class BuiltInDataset(Dataset):
    """A dataset written on first use into its cache folder."""

    def cache(self, data_cache: str) -> Path:
        """``data.cache_dir`` when set, else the run's data cache's folder for this dataset."""
        given = self.cfg.cache_dir
        if given:
            return Path(str(given)).expanduser()
        return Path(str(data_cache)).expanduser() / variant_of(self)
