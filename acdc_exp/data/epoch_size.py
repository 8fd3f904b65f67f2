"""A run's optimizer steps per epoch, known before any loader opens, and where the count came
from: what ``acdc-schedule`` plans with. The digits split has a fixed size, an existing .beton
states its image count in its header, and ``data.train_images`` is a config's hint (ImageNet-1k);
otherwise the count is unknown and one step per epoch is assumed, with a note saying so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Tuple

from acdc_exp.data.settings import builtin_dataset, expected_train_steps, resolved
from acdc_exp.errors import DataError


@dataclass(frozen=True)
class EpochSize:
    steps: int
    source: str  # where ``steps`` came from, one line
    note: Optional[str] = None  # set when the count is assumed: what, and how to set it


def _train_images(cfg: Any) -> Tuple[Optional[int], str, Optional[str]]:
    """(train images or None, where they came from, why they were not read)."""
    builtin = builtin_dataset(cfg)
    if builtin == "digits":
        from acdc_exp.data.digits import TRAIN_IMAGES

        return TRAIN_IMAGES, "the digits train split", None
    if builtin == "fashion_mnist":
        from acdc_exp.data.fashion_mnist import train_split_size

        return train_split_size(cfg.source_dir, int(cfg.holdout)), "Fashion-MNIST's train split (IDX header)", None
    try:
        path = resolved(cfg, "train_path")
    except DataError as exc:  # e.g. data.beton_dir=null: the size is unknown, not an error here
        path, unresolved = None, str(exc)
    else:
        unresolved = None
    if unresolved:
        missing = unresolved
    elif not path:
        missing = "data.train_path is not set"
    elif cfg.loader != "ffcv":
        missing = f"the images under {path} are not counted (data.loader={cfg.loader})"
    elif not Path(str(path)).expanduser().is_file():
        missing = f"{path} not found"
    else:
        from acdc_exp.data.beton import check_beton  # ffcv and numba take seconds to load

        beton = Path(str(path)).expanduser()
        try:
            return check_beton(beton).num_samples, f"the header of {beton}", None
        except DataError as exc:
            missing = str(exc)
    if cfg.train_images is not None:
        return int(cfg.train_images), f"data.train_images, assumed: {missing}", missing
    return None, "", missing


def planned_epoch_size(cfg: Any, world_size: int = 1) -> EpochSize:
    """Steps per epoch of a run of ``world_size`` processes on ``cfg`` (a DataConfig), counted
    as training counts them (``expected_train_steps``)."""
    images, origin, missing = _train_images(cfg)
    if images is None:
        return EpochSize(
            1,
            "1 step per epoch, assumed: the train set's size is unknown",
            f"steps per epoch unknown for data.name={cfg.name} ({missing}; no data.train_images); assumed 1, so "
            "ramps within an epoch do not show; set schedule.steps_per_epoch=N or data.train_images=N",
        )
    steps = expected_train_steps(cfg, images, world_size)
    parts = [f"{images} train images ({origin}) in batches of {cfg.batch_size}"]
    if cfg.drop_last:
        parts.append("partial batch dropped")
    if world_size > 1:
        parts.append(f"{world_size} processes")
    if cfg.limit_train_batches is not None:
        parts.append(f"data.limit_train_batches={cfg.limit_train_batches}")
    note = None
    if missing is not None:
        note = (
            f"{missing}: assumed data.train_images={images}, {steps} steps per epoch; "
            "set schedule.steps_per_epoch=N if the run's differ"
        )
    return EpochSize(steps, f"{steps} steps per epoch: " + ", ".join(parts), note)
