"""Gradual magnitude pruning (Zhu & Gupta, 2017): a cubic ramp ``init_sparsity -> sparsity``."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import MISSING, DictConfig

from acdc_exp.errors import ConfigError
from acdc_exp.plan.sparsity_schedule import GMPSchedule
from acdc_exp.registries import SPARSITY
from acdc_exp.sparsity.masks import parse_mask_type
from acdc_exp.sparsity.methods.base import MaskedMethod, MaskedSparsityConfig


@dataclass
class GmpConfig(MaskedSparsityConfig):
    # cubic ramp from init_sparsity at start_epoch to sparsity at end_epoch
    init_sparsity: float = MISSING


@SPARSITY.register(schema=GmpConfig)
class Gmp(MaskedMethod):
    def __init__(self, cfg: DictConfig) -> None:
        # before the shared checks: an N:M pattern's own sparsity is not what is wrong here
        if parse_mask_type(str(cfg.mask_type)).kind == "nm":
            raise ConfigError(f"sparsity.mask_type={cfg.mask_type} has a fixed sparsity; a GMP ramp needs unstructured or block4")
        super().__init__(cfg)

    def schedule(self) -> GMPSchedule:
        c = self.cfg
        return GMPSchedule(
            float(c.sparsity), float(c.init_sparsity), float(c.start_epoch), float(c.end_epoch), float(c.update_frequency)
        )
