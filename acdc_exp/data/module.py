"""``DataModule``: what the trainer sees of the data, whichever loader builds the batches."""

from __future__ import annotations

import copy
import dataclasses
import itertools
from typing import Dict, Iterable, Iterator, Optional, Protocol, Tuple

import torch
from omegaconf import DictConfig

from acdc_exp.data.loaders import loader_of
from acdc_exp.data.settings import batches_for_rank, capped_steps, resolution_for_epoch, resolve_num_workers, validate_data_config
from acdc_exp.errors import DataError
from acdc_exp.registries import DATA

Batch = Tuple[torch.Tensor, torch.Tensor]


class _Source(Protocol):
    def train_len(self) -> int: ...
    def train_epoch(self, epoch: int, res: int) -> Iterator[Batch]: ...
    def val_epoch(self) -> Iterator[Batch]: ...


class DataModule:
    """Train/val batches as uint8 NCHW images and int64 labels on the run's device.

    Batches depend only on (seed, epoch): the order, crops and flips are re-derived from them,
    so resuming from an epoch checkpoint replays the same data. Iterate one train epoch at a
    time (starting a new one closes the previous iterator).
    """

    def __init__(
        self, cfg: DictConfig, source: _Source, device: torch.device, world_size: int = 1, global_val_batch: Optional[int] = None
    ) -> None:
        self.cfg = cfg  # batch sizes in it are per process (build_data splits the global ones)
        self.source = source
        self.device = device
        self.world_size = world_size
        # val shares may differ by one between ranks: the global batch is not share x ranks
        self.global_val_batch = int(cfg.val_batch_size) * world_size if global_val_batch is None else global_val_batch
        self.num_classes: int = int(cfg.num_classes)
        self._stats: Dict[torch.device, Tuple[torch.Tensor, torch.Tensor]] = {}
        self._active: Optional[Iterator[Batch]] = None

    def resolution(self, epoch: int) -> int:
        return resolution_for_epoch(self.cfg, epoch)

    def loading(self) -> Dict[str, int]:
        """What a run's summary and W&B config record about how it reads its data. The val
        batch per process is this rank's share; rank 0, which writes both records, holds the
        largest one (the one that sizes evaluation memory)."""
        return {
            "global_batch_size": int(self.cfg.batch_size) * self.world_size,
            "batch_size_per_process": int(self.cfg.batch_size),
            "global_val_batch_size": self.global_val_batch,
            "val_batch_size_per_process": int(self.cfg.val_batch_size),
            "world_size": self.world_size,
            "steps_per_epoch": self.steps_per_epoch(),
            "num_workers": int(self.cfg.num_workers),
        }

    def steps_per_epoch(self) -> int:
        return capped_steps(self.source.train_len(), self.cfg.limit_train_batches)

    def _own(self, batches: Iterator[Batch], limit: Optional[int]) -> Iterator[Batch]:
        try:
            # islice stops before fetching batch limit+1 (FFCV would decode it for nothing)
            for images, labels in itertools.islice(batches, limit):
                if images.device.type == "cpu":
                    # FFCV hands out views of buffers it refills a few batches later; a
                    # private contiguous NCHW copy is cheap next to a CPU training step.
                    images = images.contiguous()
                    labels = labels.clone()
                yield images, labels
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()

    def train_batches(self, epoch: int) -> Iterable[Batch]:
        self.close()
        self._active = self._own(self.source.train_epoch(epoch, self.resolution(epoch)), self.cfg.limit_train_batches)
        return self._active

    def close(self) -> None:
        """Stop the open train epoch's loader now (its producer thread), not when the garbage
        collector finds it: a thread still running native code at interpreter exit can abort it."""
        if self._active is not None:
            self._active.close()
            self._active = None

    def val_batches(self) -> Iterable[Batch]:
        return self._own(self.source.val_epoch(), self.cfg.limit_val_batches)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images -> float32 ``(x - mean) / std`` (0-255 scale) on the images' device, in
        the images' memory format (the trainer picks NCHW or channels_last)."""
        device = images.device
        if device not in self._stats:
            shape = (1, 3, 1, 1)
            self._stats[device] = (
                torch.tensor(list(self.cfg.mean), dtype=torch.float32, device=device).view(shape),
                torch.tensor(list(self.cfg.std), dtype=torch.float32, device=device).view(shape),
            )
        mean, std = self._stats[device]
        return torch.sub(images.to(torch.float32), mean).div_(std)


def build_data(
    cfg: DictConfig,
    *,
    data_cache: str,
    device: torch.device,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    distributed: bool = False,
) -> DataModule:
    """Check ``cfg`` (a DataConfig), locate or build the dataset's files (its variant, chosen
    by ``data._target_``) and open them with ``data.loader``."""
    validate_data_config(cfg)
    global_batch, global_val_batch = int(cfg.batch_size), int(cfg.val_batch_size)
    # train: an equal share per rank (DDP averages gradients); val: shares may differ by one
    batch_size, val_batch_size = batches_for_rank(cfg, rank, world_size)
    cfg = _per_process(
        cfg, batch_size=batch_size, val_batch_size=val_batch_size, num_workers=resolve_num_workers(cfg.num_workers)
    )
    device = torch.device(device)
    loader = loader_of(cfg)
    train_path, val_path = DATA.build(cfg).files(data_cache, loader)
    source: _Source = loader.open(
        cfg,
        train_path,
        val_path,
        device=device,
        seed=seed,
        rank=rank,
        world_size=world_size,
        distributed=distributed or world_size > 1,
    )
    if source.train_len() == 0:
        raise DataError(
            f"the train set at {train_path} fills no batch of data.batch_size="
            f"{global_batch} (drop_last={cfg.drop_last}); lower the batch size"
        )
    return DataModule(cfg, source, device, world_size, global_val_batch)


def _per_process(cfg: DictConfig, **values: int):
    """A copy of ``cfg`` (DictConfig or DataConfig) with this process's batch sizes and worker
    count, the units the loaders take."""
    if dataclasses.is_dataclass(cfg):
        return dataclasses.replace(cfg, **values)
    local = copy.deepcopy(cfg)  # a DictConfig copy keeps its parent, so interpolations still resolve
    for key, value in values.items():
        setattr(local, key, value)
    return local
