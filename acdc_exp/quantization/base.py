"""The interface the trainer calls for quantization-aware training; a no-op when QAT is off."""

from __future__ import annotations

from typing import Optional

from torch import nn

from acdc_exp.plan import StepPlan


class NoQuantization:
    """QAT disabled: every hook does nothing."""

    prepared = False

    def begin_step(self, p: StepPlan, model: nn.Module) -> bool:
        """Apply the plan's QAT switches; True when modules were swapped (prepare)."""
        return False

    def prepare(self, model: nn.Module) -> None:
        raise RuntimeError("quantization is disabled")

    def convert(self, model: nn.Module) -> Optional[nn.Module]:
        """An int8 copy of a prepared model for CPU evaluation, or None."""
        return None

    def state_dict(self) -> dict:
        return {"prepared": False}

    def load_state_dict(self, state: dict) -> None:
        pass
