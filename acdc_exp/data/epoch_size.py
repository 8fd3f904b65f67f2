"""A run's optimizer steps per epoch, known before any loader opens, and where the count came
from: what ``acdc-schedule`` plans with. The dataset variant counts its train images: a built-in
one knows its split, an existing .beton states its image count in its header, and
``data.train_images`` is a config's hint (ImageNet-1k); otherwise the count is unknown and one
step per epoch is assumed, with a note saying so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from acdc_exp.data.loaders import loader_of
from acdc_exp.data.settings import expected_train_steps
from acdc_exp.registries import DATA


@dataclass(frozen=True)
class EpochSize:
    steps: int
    source: str  # where ``steps`` came from, one line
    note: Optional[str] = None  # set when the count is assumed: what, and how to set it


def planned_epoch_size(cfg: Any, world_size: int = 1) -> EpochSize:
    """Steps per epoch of a run of ``world_size`` processes on ``cfg`` (a DataConfig), counted
    as training counts them (``expected_train_steps``)."""
    known = DATA.build(cfg).train_images(loader_of(cfg))
    images, origin, missing = known.count, known.origin, known.missing
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
