"""``lr_schedule=segments``: the segments given whole, as an experiment or a SparseML recipe
gives them (``configs/experiment/*``)."""

from __future__ import annotations

from typing import Any

from acdc_exp.plan.lr import LRSchedule, LRSegment, WeightDecaySegment
from acdc_exp.registries import LR_SCHEDULES, LRScheduleConfig


@LR_SCHEDULES.register(schema=LRScheduleConfig)
def segments(cfg: Any) -> LRSchedule:
    """The config's segments, checked (``LRSegment``), in the plan's terms."""
    lr = tuple(
        LRSegment(
            func=str(s.func),
            start_epoch=float(s.start_epoch),
            end_epoch=None if s.end_epoch is None else float(s.end_epoch),
            init_lr=float(s.init_lr),
            final_lr=float(s.final_lr),
        )
        for s in cfg.segments
    )
    wd = tuple(WeightDecaySegment(float(s.start_epoch), float(s.weight_decay)) for s in cfg.weight_decay)
    return LRSchedule(lr, wd)
