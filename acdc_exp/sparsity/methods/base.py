"""What a sparsity method is: from its typed config it builds the pure schedule the plan
follows and the sparsifier that owns the masks (``registries.SPARSITY`` registers each one).

``SparsityMethod`` prunes nothing (the dense baseline). ``MaskedMethod`` holds what every
pruning method shares: which weights, how masks are shaped, at what target sparsity, and the
mask rule (magnitude by default; a method with its own rule overrides ``mask_rule``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from omegaconf import MISSING, DictConfig
from torch import nn

from acdc_exp.errors import ConfigError
from acdc_exp.plan.sparsity_schedule import SparsitySchedule
from acdc_exp.registries import VariantConfig
from acdc_exp.registry import variant_of
from acdc_exp.sparsity.masks import check_sparsity, parse_mask_type
from acdc_exp.sparsity.sparsifier import MaskRule, Sparsifier, check_count


class SparsityMethod:
    """No pruning. Construction checks the config's values (one line each)."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg

    @property
    def name(self) -> str:
        return variant_of(self)

    @property
    def label(self) -> str:
        """The method as tables and plots tell its runs apart (``acdc-sweep-collect``): its name,
        plus the choices that make another method of it (RigL's layer distribution)."""
        return self.name

    @property
    def target_sparsity(self) -> float:
        return 0.0

    @property
    def mask_type(self) -> str:
        return "none"

    def schedule(self) -> SparsitySchedule:
        return SparsitySchedule()

    def sparsifier(self, model: nn.Module) -> Sparsifier:
        return Sparsifier(model, params=[])  # selects nothing: every hook returns at once


@dataclass
class MaskedSparsityConfig(VariantConfig):
    sparsity: float = MISSING  # compression (AC/DC) or final (GMP) sparsity
    mask_type: str = MISSING  # unstructured | block4 | N:M such as 2:4
    global_sparsity: bool = MISSING
    # weight names or glob patterns; SparseML ResNet names are accepted as aliases
    params: List[str] = MISSING
    start_epoch: float = MISSING
    end_epoch: float = MISSING
    update_frequency: float = MISSING
    # keep the k largest weights (blocks) of every output channel when masking (masks.py)
    min_kept_per_channel: int = MISSING


class MaskedMethod(SparsityMethod):
    """A method that prunes ``params`` to a target sparsity with masks of ``mask_type``."""

    def __init__(self, cfg: DictConfig) -> None:
        super().__init__(cfg)
        if not 0.0 <= float(cfg.sparsity) <= 1.0:
            raise ConfigError(f"sparsity.sparsity={cfg.sparsity} is out of range; allowed: 0 <= sparsity <= 1")
        try:
            kind = parse_mask_type(str(cfg.mask_type))
        except ConfigError as exc:  # name the config key, as every message here does
            raise ConfigError(f"sparsity.{exc}") from None
        if kind.kind == "nm":
            check_sparsity(float(cfg.sparsity), str(cfg.mask_type))  # N:M fixes sparsity at 1 - N/M
        check_count("min_kept_per_channel", cfg.min_kept_per_channel)

    @property
    def target_sparsity(self) -> float:
        return float(self.cfg.sparsity)

    @property
    def mask_type(self) -> str:
        return str(self.cfg.mask_type)

    def mask_rule(self) -> Optional[MaskRule]:
        """The method's own mask rule; None: magnitude masks of ``mask_type`` (the sparsifier's)."""
        return None

    def sparsifier_options(self) -> Dict[str, Any]:
        """The method's own choices the sparsifier applies (AC/DC's dense-phase ones)."""
        return {}

    def sparsifier(self, model: nn.Module) -> Sparsifier:
        c = self.cfg
        return Sparsifier(
            model,
            params=list(c.params),
            mask_type=str(c.mask_type),
            global_sparsity=bool(c.global_sparsity),
            min_kept_per_channel=c.min_kept_per_channel,
            mask_rule=self.mask_rule(),
            **self.sparsifier_options(),
        )
