"""The loaders a dataset's files can be read with (``data.loader``), and what each can do.

Each loader is named once, here; code asks its capabilities (``reads_betons``...) instead of
comparing its name. Its source class is imported only when a run opens it: FFCV and numba,
or torchvision, take seconds to load.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict

from acdc_exp.errors import DataError


@dataclass(frozen=True)
class Loader:
    source: str  # the class that opens the train and val loaders (data/module.py's _Source)
    reads_betons: bool  # FFCV .beton files; else an ImageFolder tree
    pads_crops: bool  # data.crop_padding (random crop of a zero-padded image)
    # data.order=quasi_random with the OS page cache (FFCV allows it with its own cache only)
    quasi_random_with_os_cache: bool
    rank_given: bool  # the source shards by the rank it is given (FFCV asks torch.distributed)

    def open(
        self, cfg: Any, train: Path, val: Path, *, device: Any, seed: int, rank: int, world_size: int, distributed: bool
    ) -> Any:
        """The loader source over ``train`` and ``val`` for this process."""
        module, name = self.source.rsplit(".", 1)
        source = getattr(importlib.import_module(module), name)
        placement = dict(rank=rank, world_size=world_size) if self.rank_given else {}
        return source(
            cfg, train, val, device=device, seed=seed, distributed=distributed, num_classes=cfg.num_classes, **placement
        )


LOADERS: Dict[str, Loader] = {
    "ffcv": Loader(
        "acdc_exp.data.ffcv_loader.FfcvSource",
        reads_betons=True,
        pads_crops=True,
        quasi_random_with_os_cache=False,
        rank_given=False,
    ),
    "folder": Loader(
        "acdc_exp.data.folder_loader.FolderSource",
        reads_betons=False,
        pads_crops=False,
        quasi_random_with_os_cache=True,
        rank_given=True,
    ),
}


def loader_of(cfg: Any) -> Loader:
    """The loader ``cfg.loader`` names; one line naming the allowed ones otherwise."""
    loader = LOADERS.get(str(cfg.loader))
    if loader is None:
        raise DataError(f"data.loader={cfg.loader!r}; allowed: {', '.join(LOADERS)}")
    return loader
