"""RigL (Evci et al., 2020): sparse from the first step, with masks that move during training.

The layers start at random masks whose per-layer sparsity is ``uniform`` or Erdős–Rényi-Kernel
(``erk``). Every ``delta_t`` steps while the step is below ``end_fraction`` of training, each
layer drops the fraction ``f(t) = alpha / 2 * (1 + cos(pi * t / T_end))`` of its active weights
with the smallest magnitude and grows as many inactive ones with the largest dense gradient
(``grow: gradient``; SET's random grow is ``grow: random``). Grown weights start at zero with no
momentum. As in the paper and the authors' code, an update step takes the place of that step's
optimizer step, and the step counter counts it like any other step. Which weights take part is
``params``, as for every method. The mask arithmetic is ``sparsity/dynamic_masks.py``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Dict, List, Optional

import torch
from omegaconf import MISSING, DictConfig
from torch import nn

from acdc_exp.errors import ConfigError, check_choice
from acdc_exp.plan import StepPlan
from acdc_exp.plan.sparsity_schedule import COMPRESSED, SparsitySchedule
from acdc_exp.records import MaskUpdate
from acdc_exp.registries import SPARSITY, VariantConfig
from acdc_exp.sparsity.dynamic_masks import DISTRIBUTIONS, drop_and_grow, layer_sparsities, random_mask
from acdc_exp.sparsity.methods.base import SparsityMethod
from acdc_exp.sparsity.sparsifier import Sparsifier

GROW = ("gradient", "random")


@dataclass
class RiglConfig(VariantConfig):
    sparsity: float = MISSING  # overall sparsity of the selected weights, from the first step
    distribution: str = MISSING  # uniform | erk: how that sparsity is spread over the layers
    # weight names or glob patterns, as for every method (the stem and the classifier stay dense)
    params: List[str] = MISSING
    delta_t: int = MISSING  # optimizer steps between mask updates
    alpha: float = MISSING  # the fraction of active weights the first update replaces
    end_fraction: float = MISSING  # no update from this fraction of the run's steps on
    grow: str = MISSING  # gradient (RigL) | random (SET)
    # the initial masks and SET's grow scores: one value on every rank (the run's seed)
    seed: int = MISSING


@dataclass(frozen=True)
class RiglSchedule(SparsitySchedule):
    """Compressed from the first step at the target sparsity; mask updates counted in steps.
    ``bind`` gives it the run's length, which the update steps and ``T_end`` follow."""

    sparsity_target: float = 0.0
    delta_t: int = 100
    alpha: float = 0.3
    end_fraction: float = 0.75
    dense_gradient: bool = True
    steps_per_epoch: Optional[int] = None
    total_steps: Optional[int] = None

    def bind(self, steps_per_epoch: int, total_steps: int) -> "RiglSchedule":
        return dataclasses.replace(self, steps_per_epoch=steps_per_epoch, total_steps=total_steps)

    @property
    def end_step(self) -> int:
        """T_end: the first step with no update (updates are at steps t < T_end, as the paper's
        Algorithm 1; the authors' code also updates at T_end itself, where f(T_end) = 0)."""
        if self.total_steps is None:
            raise RuntimeError("RiglSchedule.bind(steps_per_epoch, total_steps) first: its updates are counted in steps")
        return int(self.end_fraction * self.total_steps)

    def phase(self, epoch: float) -> str:
        return COMPRESSED

    def sparsity(self, epoch: float) -> float:
        return self.sparsity_target

    def update_steps(self) -> range:
        return range(0, self.end_step, self.delta_t)

    def update_epochs(self) -> List[float]:
        return [s / self.steps_per_epoch for s in self.update_steps()]

    def drop_fraction(self, step: int) -> float:
        """f(t) = alpha / 2 * (1 + cos(pi * min(t, T_end) / T_end)): the reference's cosine decay."""
        end = self.end_step
        if end <= 0:
            return 0.0
        return self.alpha * 0.5 * (1.0 + math.cos(math.pi * min(step, end) / end))


class RiglSparsifier(Sparsifier):
    """Masks from the first step; at an update step, drop and grow from this step's gradients
    (``update_after_backward``), which the training step then takes instead of the optimizer's."""

    def __init__(self, model: nn.Module, *, params: List[str], sparsity: float, distribution: str, grow: str, seed: int) -> None:
        super().__init__(model, params=params, reset_momentum="none")
        shapes = {n: tuple(self._params[n].shape) for n in self.names}
        self.sparsities: Dict[str, float] = layer_sparsities(shapes, sparsity, distribution) if shapes else {}
        self.target = float(sparsity)
        self.grow = grow
        self.seed = int(seed)

    def begin_step(self, p: StepPlan) -> Optional[MaskUpdate]:
        if not self.names:
            return None
        if self.masks is None:
            return self._start(p)
        self.stale_momentum.maybe_settle(self.optimizer, self._params, self._keep, p.step)
        return None

    def _generator(self, step: int) -> torch.Generator:
        # a function of (seed, step) alone: every rank and every resume draws the same numbers
        return torch.Generator().manual_seed(self.seed * 1_000_003 + step)

    @torch.no_grad()
    def _start(self, p: StepPlan) -> MaskUpdate:
        g = self._generator(-1)
        # drawn on the CPU (the same numbers on every rank and device), used on the weights' device
        masks = {n: random_mask(self._params[n].shape, self.sparsities[n], g).to(self._params[n].device) for n in self.names}
        return self._install(p, masks, grown={}, fraction=None)

    @torch.no_grad()
    def update_after_backward(self, p: StepPlan) -> Optional[MaskUpdate]:
        if not self.names or not p.masks.update or self.masks is None:
            return None
        if self.grow == "gradient" and not self._gradients_finite():
            return None  # an overflowed fp16 step: no update; the loss scaler skips the step and backs off
        g = self._generator(p.step) if self.grow == "random" else None
        masks, grown = {}, {}
        for n in self.names:
            param, mask = self._params[n], self.masks[n]
            if g is not None:
                score = torch.rand(tuple(param.shape), generator=g).to(param.device)
            elif param.grad is not None:
                score = param.grad.abs()  # the dense gradient: the masks have not touched it yet
            else:
                score = torch.zeros_like(param)
            masks[n], grown[n] = drop_and_grow(mask.contiguous(), param.detach(), score, p.masks.drop_fraction)
        return self._install(p, masks, grown, p.masks.drop_fraction)

    def _gradients_finite(self) -> bool:
        grads = [self._params[n].grad for n in self.names if self._params[n].grad is not None]
        return all(bool(torch.isfinite(g).all()) for g in grads)

    def _install(
        self, p: StepPlan, masks: Dict[str, torch.Tensor], grown: Dict[str, torch.Tensor], fraction: Optional[float]
    ) -> MaskUpdate:
        for n, new in grown.items():  # new connections start at zero, with no momentum
            param = self._params[n]
            param.masked_fill_(new.to(param.device), 0)
            buf = self.optimizer.state.get(param, {}).get("momentum_buffer") if self.optimizer else None
            if buf is not None:
                buf.masked_fill_(new.to(buf.device), 0)
        update = self._replace_masks(p, [masks[n] for n in self.names])
        update.drop_fraction = fraction
        return update


@SPARSITY.register(schema=RiglConfig)
class Rigl(SparsityMethod):
    def __init__(self, cfg: DictConfig) -> None:
        super().__init__(cfg)
        if not 0.0 <= float(cfg.sparsity) < 1.0:
            raise ConfigError(f"sparsity.sparsity={cfg.sparsity} is out of range; allowed: 0 <= sparsity < 1")
        check_choice("sparsity.distribution", cfg.distribution, DISTRIBUTIONS)
        check_choice("sparsity.grow", cfg.grow, GROW)
        if isinstance(cfg.delta_t, bool) or not isinstance(cfg.delta_t, int) or cfg.delta_t < 1:
            raise ConfigError(f"sparsity.delta_t={cfg.delta_t!r} is not allowed; allowed: an integer >= 1 (steps)")
        if not 0.0 <= float(cfg.alpha) <= 1.0:
            raise ConfigError(f"sparsity.alpha={cfg.alpha} is out of range; allowed: 0 <= alpha <= 1")
        if not 0.0 <= float(cfg.end_fraction) <= 1.0:
            raise ConfigError(f"sparsity.end_fraction={cfg.end_fraction} is out of range; allowed: 0 <= end_fraction <= 1")

    @property
    def label(self) -> str:
        """``rigl-erk``, ``rigl-uniform``; SET (random grow) as ``set-erk``, ``set-uniform``."""
        return f"{'rigl' if self.cfg.grow == 'gradient' else 'set'}-{self.cfg.distribution}"

    @property
    def target_sparsity(self) -> float:
        return float(self.cfg.sparsity)

    @property
    def mask_type(self) -> str:
        return "unstructured"

    def schedule(self) -> RiglSchedule:
        c = self.cfg
        return RiglSchedule(
            float(c.sparsity), int(c.delta_t), float(c.alpha), float(c.end_fraction), dense_gradient=c.grow == "gradient"
        )

    def sparsifier(self, model: nn.Module) -> RiglSparsifier:
        c = self.cfg
        return RiglSparsifier(
            model,
            params=list(c.params),
            sparsity=float(c.sparsity),
            distribution=str(c.distribution),
            grow=str(c.grow),
            seed=int(c.seed),
        )
