"""The plan: everything a recipe decides, as a pure function of the optimizer step.

``Plan.at(step)`` returns a ``StepPlan`` (lr, weight decay, AC/DC phase, target sparsity,
whether masks are recomputed, QAT switches) from the config alone, with no model and no
data, so a 206-epoch schedule can be printed, plotted and tested in milliseconds, and a
resumed run lands in the right phase from its step counter alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from omegaconf import DictConfig

from acdc_exp.errors import ConfigError
from acdc_exp.plan.lr import LRSegment, WeightDecaySegment, lr_at, weight_decay_at
from acdc_exp.plan.sparsity_schedule import COMPRESSED, DENSE, SparsitySchedule
from acdc_exp.registries import LR_SCHEDULES, QUANTIZATION, SPARSITY

QAT = "qat"  # the phase name once QAT has started (on top of the sparsity phase)
PHASE_IDS = {DENSE: 0, COMPRESSED: 1, QAT: 2}


@dataclass(frozen=True)
class QATSchedule:
    enabled: bool = False
    start_epoch: float = math.inf
    disable_observer_epoch: float = math.inf
    freeze_bn_stats_epoch: float = math.inf

    def __post_init__(self) -> None:
        for name in ("disable_observer_epoch", "freeze_bn_stats_epoch"):
            if getattr(self, name) < self.start_epoch:
                raise ConfigError(
                    f"quantization.{name}={getattr(self, name)} is before quantization.start_epoch={self.start_epoch}"
                )


@dataclass(frozen=True)
class MaskStep:
    """The sparsity part of a step: what the sparsifier reads."""

    phase: str = DENSE  # dense | compressed (the sparsity phase; QAT runs on top of it)
    sparsity: float = 0.0  # target sparsity in force (0 in dense phases)
    update: bool = False  # recompute masks at this step
    # RigL/SET: the fraction of active weights the update replaces, f(t); 0 when no update
    drop_fraction: float = 0.0
    # the update reads the dense gradient of the pruned weights (RigL's grow)
    dense_gradient: bool = False


@dataclass(frozen=True)
class QatStep:
    """The QAT part of a step: what the quantizer reads."""

    active: bool = False
    start: bool = False  # the first step of QAT: prepare the model now
    observers_frozen: bool = False
    bn_frozen: bool = False


@dataclass(frozen=True)
class StepPlan:
    step: int
    epoch: float  # fractional: step / steps_per_epoch
    lr: float
    weight_decay: float
    masks: MaskStep
    qat: QatStep = QatStep()

    @classmethod
    def make(
        cls,
        phase: str = DENSE,
        sparsity: float = 0.0,
        *,
        update_masks: bool = False,
        step: int = 0,
        epoch: float = 0.0,
        lr: float = 0.1,
        weight_decay: float = 0.0,
        qat: QatStep = QatStep(),
    ) -> "StepPlan":
        """A hand-made step (tests, benchmarks): the sparsity part by keyword, the rest defaulted."""
        return cls(step, epoch, lr, weight_decay, MaskStep(phase, sparsity, update_masks), qat)

    @property
    def phase_name(self) -> str:
        """dense / compressed / qat: what the logs call the phase."""
        return QAT if self.qat.active else self.masks.phase

    def row(self) -> Dict[str, Any]:
        """One flat row (``acdc-schedule --json``, plots): the parts' fields side by side."""
        m, q = self.masks, self.qat
        return {
            "step": self.step,
            "epoch": self.epoch,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "phase": m.phase,
            "sparsity": m.sparsity,
            "update_masks": m.update,
            "drop_fraction": m.drop_fraction,
            "qat_active": q.active,
            "qat_start": q.start,
            "observers_frozen": q.observers_frozen,
            "bn_frozen": q.bn_frozen,
            "phase_name": self.phase_name,
        }

    @property
    def phase_id(self) -> int:
        return PHASE_IDS[self.phase_name]


def _crossed(boundaries: Sequence[float], prev_epoch: float, epoch: float) -> bool:
    """True when a boundary b satisfies prev_epoch < b <= epoch: the first step at or past it."""
    return any(prev_epoch < b <= epoch + 1e-9 for b in boundaries)


class Plan:
    def __init__(
        self,
        *,
        epochs: int,
        steps_per_epoch: int,
        lr_segments: Sequence[LRSegment],
        weight_decay: float,
        weight_decay_segments: Sequence[WeightDecaySegment] = (),
        sparsity: Optional[SparsitySchedule] = None,
        qat: QATSchedule = QATSchedule(),
        dense_phase_warmup_epochs: float = 0.0,
    ) -> None:
        if epochs <= 0:
            raise ConfigError(f"trainer.epochs={epochs} must be > 0")
        if steps_per_epoch <= 0:
            raise ConfigError(f"steps_per_epoch={steps_per_epoch} must be > 0 (is the training set empty?)")
        if not lr_segments:
            raise ConfigError("lr_schedule.segments is empty; give at least one segment")
        if weight_decay < 0:
            raise ConfigError(f"optimizer.weight_decay={weight_decay} is negative; allowed: >= 0")
        self.epochs = epochs
        self.steps_per_epoch = steps_per_epoch
        self.lr_segments = list(lr_segments)
        self.weight_decay = weight_decay
        self.weight_decay_segments = list(weight_decay_segments)
        self.sparsity = (sparsity or SparsitySchedule()).bind(steps_per_epoch, epochs * steps_per_epoch)
        self.qat = qat
        self._update_steps = self.sparsity.update_steps()
        self._mask_updates = self.sparsity.update_epochs() if self._update_steps is None else []
        if dense_phase_warmup_epochs < 0:
            raise ConfigError(f"sparsity.dense_phase_warmup_epochs={dense_phase_warmup_epochs} is negative; allowed: >= 0")
        self.dense_phase_warmup_epochs = dense_phase_warmup_epochs
        self._regrowths = self.sparsity.regrowth_epochs()

    @classmethod
    def from_config(cls, cfg: DictConfig, steps_per_epoch: int, method: Optional[Any] = None) -> "Plan":
        """From the composed train config (``TrainConfig``). The lr schedule, the sparsity
        method and the quantization variant build their own schedules (``registries``: the config's
        ``_target_`` names them), and check their values on the way. ``method``: the sparsity
        method when the run has built it already (a ``SparsityMethod``; the plan knows it by its
        ``schedule()`` only)."""
        sparsity = (method or SPARSITY.build(cfg.sparsity)).schedule()
        lr = LR_SCHEDULES.build(cfg.lr_schedule)
        return cls(
            epochs=int(cfg.trainer.epochs),
            steps_per_epoch=steps_per_epoch,
            lr_segments=lr.lr,
            weight_decay=float(cfg.optimizer.weight_decay),
            weight_decay_segments=lr.weight_decay,
            sparsity=sparsity,
            qat=QUANTIZATION.build(cfg.quantization).schedule(),
            dense_phase_warmup_epochs=sparsity.dense_phase_warmup_epochs,
        )

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def epoch_of(self, step: int) -> float:
        return step / self.steps_per_epoch

    def regrowth_lr_factor(self, epoch: float) -> float:
        """Linear ramp 0 -> 1 over the first dense_phase_warmup_epochs of every dense phase
        that follows a compressed one; 1 elsewhere. Regrown weights get gradients scaled by
        BatchNorm to the sparse channel's small norm: the ramp keeps the first steps small."""
        w = self.dense_phase_warmup_epochs
        if w <= 0:
            return 1.0
        for b in self._regrowths:
            if b - 1e-9 <= epoch < b + w:
                return min(1.0, (epoch - b + 1.0 / self.steps_per_epoch) / w)
        return 1.0

    def updates_in(self, first: int, last: int) -> int:
        """How many steps of ``first..last`` update masks (schedules counted in epochs: 0 or 1,
        whether one of their update epochs falls in that span)."""
        r = self._update_steps
        if r is None:
            prev = self.epoch_of(first - 1) if first > 0 else -math.inf
            return int(_crossed(self._mask_updates, prev, self.epoch_of(last)))
        lo = max(0, -(-(first - r.start) // r.step))  # the first k with start + k * step >= first
        hi = min(len(r) - 1, (last - r.start) // r.step)
        return max(0, hi - lo + 1)

    def at(self, step: int) -> StepPlan:
        epoch = self.epoch_of(step)
        prev = self.epoch_of(step - 1) if step > 0 else -math.inf
        q = self.qat
        s = self.sparsity
        if self._update_steps is None:
            update = _crossed(self._mask_updates, prev, epoch)
        else:
            update = step in self._update_steps
        return StepPlan(
            step=step,
            epoch=epoch,
            lr=lr_at(self.lr_segments, epoch) * self.regrowth_lr_factor(epoch),
            weight_decay=weight_decay_at(self.weight_decay_segments, self.weight_decay, epoch),
            masks=MaskStep(
                phase=s.phase(epoch),
                sparsity=s.sparsity(epoch),
                update=update,
                drop_fraction=s.drop_fraction(step) if update else 0.0,
                dense_gradient=update and s.dense_gradient,
            ),
            qat=QatStep(
                active=q.enabled and epoch >= q.start_epoch - 1e-9,
                start=q.enabled and _crossed([q.start_epoch], prev, epoch),
                observers_frozen=q.enabled and epoch >= q.disable_observer_epoch - 1e-9,
                bn_frozen=q.enabled and epoch >= q.freeze_bn_stats_epoch - 1e-9,
            ),
        )

    # --- views for acdc-schedule, plots and logs -------------------------------------------

    def trace(self) -> List[Dict[str, Any]]:
        """One row per optimizer step."""
        rows = []
        for s in range(self.total_steps):
            rows.append(self.at(s).row())
        return rows

    def epoch_table(self) -> List[Dict[str, Any]]:
        """One row per epoch, taken at the epoch's first step."""
        rows = []
        for e in range(self.epochs):
            p = self.at(e * self.steps_per_epoch)
            # a step updates when (epoch_of(s - 1), epoch_of(s)] holds a boundary; over the epoch's
            # steps those intervals join into one: no need to visit each step (5004 an epoch)
            first, last = e * self.steps_per_epoch, (e + 1) * self.steps_per_epoch - 1
            updates = self.updates_in(first, last)
            first_update = self._first_update(first, last) if updates else None
            rows.append(
                {
                    "epoch": e,
                    "phase": p.phase_name,
                    "sparsity": p.masks.sparsity,
                    "lr": p.lr,
                    "weight_decay": p.weight_decay,
                    "mask_update": bool(updates),
                    "mask_updates": updates,
                    # the drop fraction of the epoch's first update (RigL/SET; 0 otherwise)
                    "drop_fraction": self.sparsity.drop_fraction(first_update) if first_update is not None else 0.0,
                    "qat": p.qat.active,
                    "observers_frozen": p.qat.observers_frozen,
                    "bn_frozen": p.qat.bn_frozen,
                }
            )
        return rows

    def _first_update(self, first: int, last: int) -> Optional[int]:
        r = self._update_steps
        if r is None:
            return None
        k = max(0, -(-(first - r.start) // r.step))
        return r[k] if k < len(r) and r[k] <= last else None

    def phase_name_at(self, step: int) -> str:
        """The phase name alone (cheaper than ``at``): dense / compressed / qat."""
        epoch = self.epoch_of(step)
        if self.qat.enabled and epoch >= self.qat.start_epoch - 1e-9:
            return QAT
        return self.sparsity.phase(epoch)

    def phase_intervals(self, samples_per_epoch: int = 100) -> List[Tuple[float, float, str]]:
        """Contiguous [start, end) epoch ranges of the same phase name, for shading plots.
        Sampled at most ``samples_per_epoch`` times an epoch so long plans stay cheap."""
        stride = max(1, self.steps_per_epoch // samples_per_epoch)
        out: List[Tuple[float, float, str]] = []
        for s in range(0, self.total_steps, stride):
            name = self.phase_name_at(s)
            end = self.epoch_of(min(s + stride, self.total_steps))
            if out and out[-1][2] == name:
                out[-1] = (out[-1][0], end, name)
            else:
                out.append((self.epoch_of(s), end, name))
        return out

    def dense_member_is_pair(self) -> bool:
        """Is the dense member trained after a compressed phase (AC/DC's sparse-dense pair), not
        the dense model before pruning began (GMP)?"""
        end = self.sparsity.dense_member_epoch()
        return end is not None and any(e < end for e in self.sparsity.regrowth_epochs())

    def is_dense_member_step(self, step: int) -> bool:
        """True at the last step of the last dense phase: the dense model of the pair is final."""
        end = self.sparsity.dense_member_epoch()
        if end is None:
            return False
        return _crossed([end], self.epoch_of(step), self.epoch_of(step + 1))


__all__ = ["Plan", "StepPlan", "QATSchedule", "PHASE_IDS", "DENSE", "COMPRESSED"]
