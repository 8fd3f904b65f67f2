"""Checks on ``DataConfig`` values and the progressive-resolution schedule."""

from __future__ import annotations

import math
import os
from typing import Any, Optional, Tuple

from omegaconf.errors import InterpolationResolutionError

from acdc_exp.data.loaders import LOADERS, loader_of
from acdc_exp.errors import AcdcError, DataError
from acdc_exp.machine import affinity_cpus

ORDERS = ("random", "quasi_random", "sequential")
MAX_SIDE = 8192  # larger training images are certainly a typo
RES_STEP = 32  # FFCV's ResNet-50 recipe rounds ramp resolutions to multiples of 32
_RAMP_FIELDS = ("min_res", "max_res", "start_ramp", "end_ramp")


def ramp_enabled(cfg: Any) -> bool:
    return all(getattr(cfg, f) is not None for f in _RAMP_FIELDS)


def _check_side(name: str, value: Any) -> None:
    if not isinstance(value, int) or not 1 <= value <= MAX_SIDE:
        raise DataError(f"data.{name}={value!r}: must be an integer number of pixels in 1..{MAX_SIDE}")


def usable_cpus() -> int:
    """CPUs this process may use: SLURM's per-task allocation when there is one, else its
    affinity mask shared by the processes of this node (torchrun starts LOCAL_WORLD_SIZE of
    them, each seeing the whole mask)."""
    mask = affinity_cpus()
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if slurm.isdigit():
        return max(1, min(mask, int(slurm)))
    return max(1, mask // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))


def resolve_num_workers(setting: Optional[int]) -> int:
    """``data.num_workers``: as given; null = this process's CPUs less one for the training
    loop (a run reads one loader at a time, so train and val share them)."""
    return int(setting) if setting is not None else max(1, usable_cpus() - 1)


def per_process_batch(global_batch: int, world_size: int, name: str) -> int:
    """``data.batch_size`` is global: each of ``world_size`` processes takes an equal share, so
    a run takes the same optimizer steps per epoch (and the recipe's learning rates mean the
    same) on any number of GPUs. DDP averages gradients over ranks, so an uneven split would
    weight some images more than others: refused."""
    if global_batch % world_size:
        raise DataError(
            f"data.{name}={global_batch} is the global batch and does not split evenly over "
            f"{world_size} processes; allowed: a multiple of {world_size}"
        )
    return global_batch // world_size


def val_batch_for_rank(global_batch: int, rank: int, world_size: int, name: str = "val_batch_size") -> int:
    """This rank's share of the global ``data.val_batch_size``: ``global // world_size``, one
    more for the first ``global % world_size`` ranks. Uneven is fine for evaluation: the shards
    are exact (data/sharding.py) and hit counts are summed over ranks, so the batch size only
    sets memory and speed. Every rank needs at least one image per batch."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside 0..{world_size - 1}")
    if global_batch < world_size:
        raise DataError(
            f"data.{name}={global_batch} is the global batch and is smaller than the {world_size} "
            f"processes; allowed: at least {world_size} (one image per process)"
        )
    base, extra = divmod(global_batch, world_size)
    return base + (1 if rank < extra else 0)


def capped_steps(batches: int, limit: Optional[int]) -> int:
    """Optimizer steps of a train epoch of ``batches`` batches under ``data.limit_train_batches``."""
    return batches if limit is None else min(batches, int(limit))


def expected_train_steps(cfg: Any, train_images: int, world_size: int = 1) -> int:
    """Steps per epoch a run of ``world_size`` processes takes over ``train_images`` images,
    as the loaders count them: each process gets ``ceil(images / world_size)`` of them (the
    distributed samplers pad the last share) in batches of its share of the global batch,
    the last partial batch dropped with ``drop_last``; then ``limit_train_batches``."""
    per_process = math.ceil(train_images / world_size)
    batch = per_process_batch(int(cfg.batch_size), world_size, "batch_size")
    batches = per_process // batch if cfg.drop_last else math.ceil(per_process / batch)
    return capped_steps(batches, cfg.limit_train_batches)


def resolved(cfg: Any, name: str) -> Any:
    """``cfg.<name>``; a resolver's own one-line error (the .beton naming's) comes out as itself,
    not inside OmegaConf's multi-line wrapper."""
    try:
        return getattr(cfg, name)
    except InterpolationResolutionError as exc:
        cause: Optional[BaseException] = exc
        while cause is not None and not isinstance(cause, AcdcError):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        raise cause from None


def batches_for_rank(cfg: Any, rank: int, world_size: int) -> Tuple[int, int]:
    """(train, val) batch of process ``rank`` of ``world_size`` from ``cfg``'s global ones;
    what ``build_data`` hands the loaders (and what a launcher preset can be checked with)."""
    train = per_process_batch(int(cfg.batch_size), world_size, "batch_size")
    return train, val_batch_for_rank(int(cfg.val_batch_size), rank, world_size)


def validate_data_config(cfg: Any) -> None:
    """Raise a one-line DataError for the first unusable value in ``cfg`` (a DataConfig): the
    loader's and every dataset's values; the dataset variant checks its own when built."""
    loader = loader_of(cfg)
    if cfg.order not in ORDERS:
        raise DataError(f"data.order={cfg.order!r}; allowed: {', '.join(ORDERS)}")
    for name in ("batch_size", "val_batch_size", "batches_ahead"):
        if getattr(cfg, name) < 1:
            raise DataError(f"data.{name}={getattr(cfg, name)} must be >= 1")
    if cfg.num_workers is not None and cfg.num_workers < 0:
        raise DataError(f"data.num_workers={cfg.num_workers} must be >= 0")
    if cfg.num_classes < 1:
        raise DataError(f"data.num_classes={cfg.num_classes} must be >= 1")
    _check_side("res", cfg.res)
    _check_side("val_res", cfg.val_res)
    given = [f for f in _RAMP_FIELDS if getattr(cfg, f) is not None]
    if given and len(given) < len(_RAMP_FIELDS):
        missing = [f for f in _RAMP_FIELDS if f not in given]
        raise DataError(
            f"progressive resizing needs all of {', '.join(_RAMP_FIELDS)}; "
            f"missing data.{', data.'.join(missing)} (or set all to null)"
        )
    if given:
        _check_side("min_res", cfg.min_res)
        _check_side("max_res", cfg.max_res)
        if cfg.min_res > cfg.max_res:
            raise DataError(f"data.min_res={cfg.min_res} is larger than data.max_res={cfg.max_res}")
        if not 0 <= cfg.start_ramp <= cfg.end_ramp:
            raise DataError(f"data.start_ramp={cfg.start_ramp}, data.end_ramp={cfg.end_ramp}: need 0 <= start_ramp <= end_ramp")
    if cfg.crop_padding < 0:
        raise DataError(f"data.crop_padding={cfg.crop_padding} must be >= 0 pixels")
    if cfg.crop_padding and not loader.pads_crops:
        padders = ", ".join(name for name, kind in LOADERS.items() if kind.pads_crops)
        raise DataError(f"data.crop_padding={cfg.crop_padding} needs data.loader={padders} (set 0 for loader={cfg.loader})")
    if cfg.crop_padding and cfg.random_resized_crop:
        raise DataError("data.crop_padding and data.random_resized_crop are two crops; set one of them")
    if not 0.0 < cfg.crop_scale_min <= 1.0:
        raise DataError(f"data.crop_scale_min={cfg.crop_scale_min} must be in (0, 1]")
    if not 0.0 < cfg.center_crop_ratio <= 1.0:
        raise DataError(f"data.center_crop_ratio={cfg.center_crop_ratio} must be in (0, 1]")
    if len(cfg.mean) != 3 or len(cfg.std) != 3:
        raise DataError(f"data.mean and data.std need 3 values (RGB), got {list(cfg.mean)} and {list(cfg.std)}")
    if min(cfg.std) <= 0:
        raise DataError(f"data.std={list(cfg.std)} must be positive")
    for name in ("limit_train_batches", "limit_val_batches"):
        value = getattr(cfg, name)
        if value is not None and value < 1:
            raise DataError(f"data.{name}={value} must be >= 1 or null")
    if cfg.order == "quasi_random" and cfg.os_cache and not loader.quasi_random_with_os_cache:
        raise DataError("data.order=quasi_random needs data.os_cache=false (FFCV only supports it with its process cache)")


def resolution_for_epoch(cfg: Any, epoch: int) -> int:
    """Training resolution of ``epoch``: ``res``, or the min_res -> max_res linear ramp."""
    if not ramp_enabled(cfg):
        return int(cfg.res)
    lo, hi = int(cfg.min_res), int(cfg.max_res)
    if epoch <= cfg.start_ramp:
        return lo
    if epoch >= cfg.end_ramp:
        return hi
    frac = (epoch - cfg.start_ramp) / (cfg.end_ramp - cfg.start_ramp)
    res = int(round((lo + frac * (hi - lo)) / RES_STEP)) * RES_STEP
    return min(max(res, lo), hi)
