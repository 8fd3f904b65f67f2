"""quantization=none: no QAT (``configs/quantization/none.yaml``)."""

from __future__ import annotations

from typing import Optional

from omegaconf import DictConfig
from torch import nn

from acdc_exp.plan import QATSchedule
from acdc_exp.quantization.base import NoQuantization
from acdc_exp.registries import QUANTIZATION


@QUANTIZATION.register()
class NoQat:
    """Its config is only its ``_target_``: a schedule that never starts QAT, hooks that do nothing."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg

    def schedule(self) -> QATSchedule:
        return QATSchedule()

    def controller(self, model: Optional[nn.Module] = None) -> NoQuantization:
        return NoQuantization()
