"""``lr_schedule=warmup_cosine``, ``lr_schedule=constant``: a preset, whose segments its YAML
interpolates from a few knobs (warm-up length, peak and starting lr) that the command line sets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import MISSING

from acdc_exp.plan.lr import LRSchedule
from acdc_exp.plan.lr_schedules.segments import segments
from acdc_exp.registries import LR_SCHEDULES, LRScheduleConfig


@dataclass
class PresetLRScheduleConfig(LRScheduleConfig):
    warmup_epochs: float = MISSING
    peak_lr: float = MISSING
    warmup_start_lr: float = MISSING


@LR_SCHEDULES.register(schema=PresetLRScheduleConfig)
def preset(cfg: Any) -> LRSchedule:
    """The segments the knobs filled in (the YAML's interpolations)."""
    return segments(cfg)
