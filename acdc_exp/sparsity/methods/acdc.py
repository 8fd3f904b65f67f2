"""AC/DC (Peste et al., 2021) with SparseML ACDCPruningModifier semantics: alternating dense and
compressed phases, or the explicit phases of the paper's own variant."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from omegaconf import MISSING, DictConfig

from acdc_exp.errors import check_choice
from acdc_exp.plan.sparsity_schedule import ACDCSchedule, ExplicitPhaseSchedule, SparsitySchedule
from acdc_exp.registries import SPARSITY
from acdc_exp.sparsity.methods.base import MaskedMethod, MaskedSparsityConfig
from acdc_exp.sparsity.sparsifier import DEAD_CHANNELS, RESET_MOMENTUM


@dataclass
class PhaseConfig:
    """An explicit AC/DC phase, for schedules the periodic rule cannot express."""

    start_epoch: float = MISSING
    end_epoch: float = MISSING
    phase: str = MISSING  # dense | compressed


@dataclass
class AcdcConfig(MaskedSparsityConfig):
    # explicit phases replace the periodic rule (the AC/DC paper's own variant)
    phases: Optional[List[PhaseConfig]] = MISSING
    # when a dense phase begins: all | pruned | none (acdc_exp/sparsity/sparsifier.py)
    reset_momentum: str = MISSING
    # output channels pruned whole: regrow | keep_pruned in dense phases (sparsifier.py)
    dead_channels: str = MISSING
    # lr ramps 0 -> schedule over this many epochs at the start of each dense phase after a
    # compressed one (plan/plan.py::regrowth_lr_factor)
    dense_phase_warmup_epochs: float = MISSING


@SPARSITY.register(schema=AcdcConfig)
class Acdc(MaskedMethod):
    def __init__(self, cfg: DictConfig) -> None:
        super().__init__(cfg)
        check_choice("sparsity.reset_momentum", cfg.reset_momentum, RESET_MOMENTUM)
        check_choice("sparsity.dead_channels", cfg.dead_channels, DEAD_CHANNELS)

    def schedule(self) -> SparsitySchedule:
        c = self.cfg
        warmup = float(c.dense_phase_warmup_epochs)
        if c.phases:
            phases = [(float(p.start_epoch), float(p.end_epoch), str(p.phase)) for p in c.phases]
            return ExplicitPhaseSchedule(float(c.sparsity), phases, dense_phase_warmup_epochs=warmup)
        return ACDCSchedule(
            float(c.sparsity),
            float(c.start_epoch),
            float(c.end_epoch),
            float(c.update_frequency),
            dense_phase_warmup_epochs=warmup,
        )

    def sparsifier_options(self) -> Dict[str, Any]:
        return {"reset_momentum": str(self.cfg.reset_momentum), "dead_channels": str(self.cfg.dead_channels)}
