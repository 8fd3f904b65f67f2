"""When weights are pruned: AC/DC (SparseML ACDCPruningModifier semantics), GMP, or never.

Each schedule answers, for a fractional epoch, which phase is in force and at what target
sparsity, and lists the epochs at which masks are recomputed. Nothing here sees a model.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from acdc_exp.errors import ConfigError

DENSE = "dense"
COMPRESSED = "compressed"


def _check_window(start: float, end: float, freq: float) -> None:
    if freq <= 0:
        raise ConfigError(f"sparsity.update_frequency={freq} must be > 0")
    if end <= start:
        raise ConfigError(f"sparsity.end_epoch={end} must be greater than sparsity.start_epoch={start}")


class SparsitySchedule:
    """Base: always dense. A method's schedule is built by its module (sparsity/methods/)."""

    # the plan's lr ramp at the start of each dense phase after a compressed one (AC/DC's)
    dense_phase_warmup_epochs: float = 0.0
    # update steps compute the dense gradient of the pruned weights (RigL's grow; FLOPs count it)
    dense_gradient: bool = False

    def bind(self, steps_per_epoch: int, total_steps: int) -> "SparsitySchedule":
        """The schedule for a run of ``total_steps`` steps; one counted in epochs needs neither."""
        return self

    def update_steps(self) -> Optional[range]:
        """The steps that update masks, for a schedule counted in steps (RigL); None: the
        update epochs say it (the first step at or past each)."""
        return None

    def drop_fraction(self, step: int) -> float:
        """The fraction of active weights an update at ``step`` replaces (dynamic methods)."""
        return 0.0

    def phase(self, epoch: float) -> str:
        return DENSE

    def sparsity(self, epoch: float) -> float:
        return 0.0

    def update_epochs(self) -> List[float]:
        """Epochs at which masks are (re)computed, ascending."""
        return []

    def dense_member_epoch(self) -> Optional[float]:
        """Epoch at which the last dense (decompressed) phase ends: the dense model of the pair."""
        return None

    def regrowth_epochs(self) -> List[float]:
        """Epochs at which a dense phase follows a compressed one (pruned weights regrow)."""
        return []


@dataclass
class ACDCSchedule(SparsitySchedule):
    """Alternating dense / compressed phases of ``update_frequency`` epochs.

    With ``k = floor((epoch - start) / freq)`` a phase is dense when k is even and
    ``epoch < end - freq``, otherwise compressed; dense before ``start``. So the phase that
    begins at ``end - freq`` is always compressed, and masks stay in force after ``end``.
    """

    sparsity_target: float
    start_epoch: float
    end_epoch: float
    update_frequency: float
    dense_phase_warmup_epochs: float = 0.0

    def __post_init__(self) -> None:
        _check_window(self.start_epoch, self.end_epoch, self.update_frequency)

    def phase(self, epoch: float) -> str:
        if epoch < self.start_epoch:
            return DENSE
        k = math.floor((epoch - self.start_epoch) / self.update_frequency + 1e-9)
        if k % 2 == 0 and epoch < self.end_epoch - self.update_frequency:
            return DENSE
        return COMPRESSED

    def sparsity(self, epoch: float) -> float:
        return self.sparsity_target if self.phase(epoch) == COMPRESSED else 0.0

    def _boundaries(self) -> List[float]:
        out, k = [], 0
        while True:
            b = self.start_epoch + k * self.update_frequency
            if b >= self.end_epoch - 1e-9:
                break
            out.append(b)
            k += 1
        out.append(self.end_epoch)
        return out

    def update_epochs(self) -> List[float]:
        # every boundary that opens (or continues into) a compressed phase, plus end_epoch
        return [b for b in self._boundaries() if self.phase(b) == COMPRESSED]

    def dense_member_epoch(self) -> Optional[float]:
        ends = [b for b in self._boundaries() if self.phase(b) == COMPRESSED and self.phase(b - 1e-6) == DENSE]
        return ends[-1] if ends else None

    def regrowth_epochs(self) -> List[float]:
        return [b for b in self._boundaries() if self.phase(b) == DENSE and self.phase(b - 1e-6) == COMPRESSED]


@dataclass
class ExplicitPhaseSchedule(SparsitySchedule):
    """A user-written list of phases (e.g. the AC/DC paper's dense warm-up and long final
    compressed phase). Dense before the first phase; the last phase continues after its end."""

    sparsity_target: float
    phases: Sequence[Tuple[float, float, str]]
    dense_phase_warmup_epochs: float = 0.0

    def __post_init__(self) -> None:
        if not self.phases:
            raise ConfigError("sparsity.phases is empty; give at least one {start_epoch, end_epoch, phase}")
        prev_end = None
        for start, end, ph in self.phases:
            if ph not in (DENSE, COMPRESSED):
                raise ConfigError(f"sparsity.phases phase={ph!r} is not allowed; allowed: dense, compressed")
            if end <= start:
                raise ConfigError(f"sparsity.phases entry [{start}, {end}) must have end_epoch > start_epoch")
            if prev_end is not None and start < prev_end - 1e-9:
                raise ConfigError(f"sparsity.phases entry starting at {start} overlaps the previous one (ends {prev_end})")
            prev_end = end

    def phase(self, epoch: float) -> str:
        for start, end, ph in self.phases:
            if start <= epoch < end:
                return ph
        if epoch >= self.phases[-1][1]:
            return self.phases[-1][2]
        return DENSE  # before the first phase, or in a gap between phases

    def sparsity(self, epoch: float) -> float:
        return self.sparsity_target if self.phase(epoch) == COMPRESSED else 0.0

    def update_epochs(self) -> List[float]:
        return [start for start, _, ph in self.phases if ph == COMPRESSED]

    def dense_member_epoch(self) -> Optional[float]:
        ends = [start for start in self.update_epochs() if self.phase(start - 1e-6) == DENSE]
        return ends[-1] if ends else None

    def regrowth_epochs(self) -> List[float]:
        return [start for start, _, ph in self.phases if ph == DENSE and self.phase(start - 1e-6) == COMPRESSED]


@dataclass
class GMPSchedule(SparsitySchedule):
    """Gradual magnitude pruning, cubic ramp of Zhu & Gupta (2017):
    s(e) = s_f + (s_i - s_f) * (1 - (e - start) / (end - start))^3, applied every
    ``update_frequency`` epochs and held in between."""

    sparsity_target: float
    init_sparsity: float
    start_epoch: float
    end_epoch: float
    update_frequency: float

    def __post_init__(self) -> None:
        _check_window(self.start_epoch, self.end_epoch, self.update_frequency)

    def _cubic(self, epoch: float) -> float:
        t = min(max((epoch - self.start_epoch) / (self.end_epoch - self.start_epoch), 0.0), 1.0)
        return self.sparsity_target + (self.init_sparsity - self.sparsity_target) * (1.0 - t) ** 3

    def phase(self, epoch: float) -> str:
        return DENSE if epoch < self.start_epoch else COMPRESSED

    def update_epochs(self) -> List[float]:
        return list(self._updates)

    @functools.cached_property
    def _updates(self) -> Tuple[float, ...]:
        # once: sparsity() reads them at every step
        out, k = [], 0
        while self.start_epoch + k * self.update_frequency < self.end_epoch - 1e-9:
            out.append(self.start_epoch + k * self.update_frequency)
            k += 1
        out.append(self.end_epoch)
        return tuple(out)

    def sparsity(self, epoch: float) -> float:
        passed = [b for b in self._updates if b <= epoch + 1e-9]
        return self._cubic(passed[-1]) if passed else 0.0

    def dense_member_epoch(self) -> Optional[float]:
        return None  # GMP trains one model: the pre-pruning network is no trained dense member
