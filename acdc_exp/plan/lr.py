"""Learning-rate and weight-decay functions of the (fractional) epoch, SparseML semantics.

A schedule is a list of segments, each a LearningRateFunctionModifier (linear / cosine over
[start, end)) or a SetLearningRateModifier (constant from start on). At any epoch the segment
that started last is in force; once its end has passed the lr holds its final value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Sequence, Tuple

from acdc_exp.errors import ConfigError


def _linear(t: float, init: float, final: float) -> float:
    return init + (final - init) * t


def _cosine(t: float, init: float, final: float) -> float:
    return final + 0.5 * (init - final) * (1.0 + math.cos(math.pi * t))


# func -> its shape over t in [0, 1] (SparseML's lr_func); None: SetLearningRateModifier,
# init_lr from start_epoch on with no end
LR_FUNCS: Dict[str, Optional[Callable[[float, float, float], float]]] = {"linear": _linear, "cosine": _cosine, "constant": None}


@dataclass(frozen=True)
class LRSegment:
    func: str
    start_epoch: float
    end_epoch: Optional[float]
    init_lr: float
    final_lr: float = 0.0

    def __post_init__(self) -> None:
        if self.func not in LR_FUNCS:
            raise ConfigError(f"lr_schedule func={self.func!r} is not supported; allowed: {', '.join(LR_FUNCS)}")
        for key in ("init_lr", "final_lr"):
            if getattr(self, key) < 0:
                raise ConfigError(f"lr_schedule segment {key}={getattr(self, key)} is negative; allowed: lr >= 0")
        if LR_FUNCS[self.func] is not None:
            if self.end_epoch is None or self.end_epoch <= self.start_epoch:
                raise ConfigError(
                    f"lr_schedule {self.func} segment start_epoch={self.start_epoch} end_epoch={self.end_epoch}: "
                    "end_epoch must be greater than start_epoch"
                )

    def value(self, epoch: float) -> float:
        shape = LR_FUNCS[self.func]
        if shape is None:
            return self.init_lr
        assert self.end_epoch is not None
        t = min(max((epoch - self.start_epoch) / (self.end_epoch - self.start_epoch), 0.0), 1.0)
        return shape(t, self.init_lr, self.final_lr)


def _latest_started(items: Sequence, epoch: float):
    """The item with the largest start_epoch <= epoch (later list entries win ties)."""
    chosen = None
    for item in items:
        if item.start_epoch <= epoch and (chosen is None or item.start_epoch >= chosen.start_epoch):
            chosen = item
    return chosen


def lr_at(segments: Sequence[LRSegment], epoch: float) -> float:
    seg = _latest_started(segments, epoch)
    if seg is None:
        # before any modifier starts the optimizer keeps its initial lr: the first segment's
        seg = min(segments, key=lambda s: s.start_epoch)
        return seg.init_lr
    return seg.value(epoch)


@dataclass(frozen=True)
class WeightDecaySegment:
    start_epoch: float
    weight_decay: float

    def __post_init__(self) -> None:
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay={self.weight_decay} is negative; allowed: >= 0")


def weight_decay_at(segments: Sequence[WeightDecaySegment], default: float, epoch: float) -> float:
    seg = _latest_started(segments, epoch)
    return default if seg is None else seg.weight_decay


@dataclass(frozen=True)
class LRSchedule:
    """What an lr_schedule variant builds (``plan/lr_schedules/``): the lr segments and the
    weight-decay settings over the run."""

    lr: Tuple[LRSegment, ...]
    weight_decay: Tuple[WeightDecaySegment, ...] = ()
