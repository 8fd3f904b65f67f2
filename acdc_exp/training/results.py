"""What a run has learned about its sparse-dense pair so far; kept in checkpoints, read by the
summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional

from acdc_exp.plan import QAT
from acdc_exp.plan.sparsity_schedule import COMPRESSED


@dataclass
class Results:
    dense: Optional[Dict[str, float]] = None  # the dense member, end of last dense phase
    dense_epoch: Optional[float] = None
    sparse: Optional[Dict[str, float]] = None  # last evaluation in a compressed phase (float)
    qat: Optional[Dict[str, float]] = None  # last evaluation with fake quantization
    final: Optional[Dict[str, float]] = None  # the latest evaluation, whatever its phase
    final_phase: Optional[str] = None
    history: list = field(default_factory=list)  # (epoch, phase, top1) of every evaluation
    resumed_at_steps: list = field(default_factory=list)  # one entry per resume (requeues)

    def record(self, metrics: Dict[str, float], phase_name: str, epoch: float) -> None:
        """One evaluation: the history, the latest, and the phase's own slot."""
        self.history.append((epoch, phase_name, metrics["top1"]))
        self.final, self.final_phase = metrics, phase_name
        if phase_name == COMPRESSED:
            self.sparse = metrics
        elif phase_name == QAT:
            self.qat = metrics
