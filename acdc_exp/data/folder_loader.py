"""torchvision/PIL fallback loader over ImageNet-layout folders (``data.loader=folder``).

It mirrors the FFCV pipelines: same sample order for the same (seed, epoch), the same crop box
and flip per sample (shared draws from ``augment``), the same center-crop box for val, and the
same uint8 NCHW output. Only resampling differs (PIL bilinear with antialias vs OpenCV area).

Each sampler item is ``(index, epoch key, resolution)``: workers are persistent, so per-epoch
settings must travel with the indices rather than live on the dataset copies in the workers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import numpy as np
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from acdc_exp.data.augment import center_crop_box, crop_from_uniforms, crop_uniforms, epoch_key, flip_decision
from acdc_exp.data.image_tree import load_rgb, scan_image_tree
from acdc_exp.data.sharding import val_shard
from acdc_exp.errors import DataError

Batch = Tuple[torch.Tensor, torch.Tensor]
Item = Tuple[int, int, int]


class _ImageTreeDataset(Dataset):
    def __init__(
        self, samples: List[Tuple[str, int]], *, train: bool, random_crop: bool, flip: bool, scale_min: float, center_ratio: float
    ) -> None:
        self.samples = samples
        self.train = train
        self.random_crop = random_crop
        self.flip = flip
        self.scale_min = scale_min
        self.center_ratio = center_ratio
        self.log_ratio = (float(np.log(3 / 4)), float(np.log(4 / 3)))

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, item: Item) -> Tuple[torch.Tensor, int]:
        index, key, res = item
        path, label = self.samples[index]
        image = load_rgb(path)
        width, height = image.size
        if self.train and self.random_crop:
            box = crop_from_uniforms(height, width, crop_uniforms(key, index), self.scale_min, 1.0, *self.log_ratio)
        else:
            box = center_crop_box(height, width, self.center_ratio if not self.train else 1.0)
        image = TF.resized_crop(image, *box, [res, res], interpolation=InterpolationMode.BILINEAR, antialias=True)
        if self.train and self.flip and flip_decision(key, index):
            image = TF.hflip(image)
        return TF.pil_to_tensor(image), label


class _EpochSampler(Sampler):
    """Yields ``(index, key, res)``; the order matches FFCV's for the same seed and epoch."""

    def __init__(self, size: int, *, seed: int, shuffle: bool, rank: int, world_size: int, distributed: bool, pad: bool) -> None:
        self.size = size
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0
        self.key = 0
        self.res = 0
        self.dist: Optional[DistributedSampler] = None
        self.shard: Optional[List[int]] = None  # evaluation: this rank's samples, unpadded
        if distributed and pad:
            self.dist = DistributedSampler(
                range(size), num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed, drop_last=False
            )
        elif distributed:
            self.shard = val_shard(size, rank, world_size)

    def set_epoch(self, epoch: int, key: int, res: int) -> None:
        self.epoch, self.key, self.res = epoch, key, res

    def _indices(self) -> List[int]:
        if self.dist is not None:
            self.dist.set_epoch(self.epoch)
            return list(self.dist)
        if self.shard is not None:
            return list(self.shard)
        if not self.shuffle:
            return list(range(self.size))
        return np.random.default_rng(self.seed + self.epoch).permutation(self.size).tolist()

    def __iter__(self) -> Iterator[Item]:
        return iter([(i, self.key, self.res) for i in self._indices()])

    def __len__(self) -> int:
        if self.shard is not None:
            return len(self.shard)
        return len(self.dist) if self.dist is not None else self.size


class FolderSource:
    """Train/val DataLoaders over ``train_path`` and ``val_path`` folders."""

    def __init__(
        self,
        cfg: DictConfig,
        train_path: Path,
        val_path: Path,
        *,
        device: torch.device,
        seed: int,
        rank: int,
        world_size: int,
        distributed: bool,
        num_classes: int,
    ) -> None:
        self.device = device
        self.seed = seed % (1 << 31)
        self.val_res = int(cfg.val_res)
        on_cuda = device.type == "cuda"
        loaders = []
        for split, path, train in (("train", train_path, True), ("val", val_path, False)):
            classes, samples = scan_image_tree(path)
            if len(classes) > num_classes:
                raise DataError(f"{split} folder {path} has {len(classes)} classes but data.num_classes={num_classes}")
            dataset = _ImageTreeDataset(
                samples,
                train=train,
                random_crop=cfg.random_resized_crop,
                flip=cfg.random_flip,
                scale_min=cfg.crop_scale_min,
                center_ratio=cfg.center_crop_ratio,
            )
            sampler = _EpochSampler(
                len(samples),
                seed=self.seed,
                shuffle=train and cfg.order != "sequential",
                rank=rank,
                world_size=world_size,
                distributed=distributed,
                pad=train,
            )
            loaders.append(
                DataLoader(
                    dataset,
                    batch_size=cfg.batch_size if train else cfg.val_batch_size,
                    sampler=sampler,
                    num_workers=cfg.num_workers,
                    pin_memory=on_cuda,
                    drop_last=cfg.drop_last if train else False,
                    persistent_workers=cfg.num_workers > 0,
                    prefetch_factor=cfg.batches_ahead if cfg.num_workers > 0 else None,
                )
            )
        self.train_loader, self.val_loader = loaders

    def train_len(self) -> int:
        return len(self.train_loader)

    def _iterate(self, loader: DataLoader, epoch: int, key: int, res: int) -> Iterator[Batch]:
        loader.sampler.set_epoch(epoch, key, res)  # read when the DataLoader iterator starts
        for images, labels in loader:
            if self.device.type == "cuda":
                images = images.to(self.device, non_blocking=True)
                labels = labels.to(self.device, non_blocking=True)
            yield images, labels

    def train_epoch(self, epoch: int, res: int) -> Iterator[Batch]:
        return self._iterate(self.train_loader, epoch, epoch_key(self.seed, epoch), res)

    def val_epoch(self) -> Iterator[Batch]:
        return self._iterate(self.val_loader, 0, 0, self.val_res)
