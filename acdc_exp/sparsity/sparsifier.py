"""Owns the masks of the selected weights and obeys the step plan.

It knows nothing about epochs: at each step it is told the phase, the target sparsity and
whether to recompute masks. In compressed phases the masks zero the pruned weights after
every optimizer step and their gradients before it; a dense phase drops the masks, and the
pruned weights regrow from exactly zero.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch
from torch import nn

from acdc_exp.plan import StepPlan
from acdc_exp.sparsity.masks import compute_mask
from acdc_exp.sparsity.selection import select_parameters


@dataclass
class MaskUpdate:
    """What a mask recomputation did, for logs and the mask-stability analysis."""

    step: int
    epoch: float
    target_sparsity: float
    layer_sparsity: Dict[str, float]
    global_sparsity: float
    # fraction of mask entries that differ from the previous compressed phase's masks
    # (None for the first mask computation)
    changed_fraction: Optional[float] = None
    layer_changed: Dict[str, float] = field(default_factory=dict)


class Sparsifier:
    def __init__(
        self,
        model: nn.Module,
        *,
        params: List[str],
        mask_type: str = "unstructured",
        global_sparsity: bool = False,
        reset_momentum: bool = True,
        enabled: bool = True,
    ) -> None:
        self.mask_type = mask_type
        self.global_sparsity = global_sparsity
        self.reset_momentum = reset_momentum
        self.names: List[str] = [n for n, _ in select_parameters(model, params)] if enabled and params else []
        self._params: Dict[str, nn.Parameter] = {}
        self.rebind(model)
        self.masks: Optional[Dict[str, torch.Tensor]] = None  # True = kept
        self._pruned: Dict[str, torch.Tensor] = {}  # ~masks, what the hooks zero
        self.last_masks: Optional[Dict[str, torch.Tensor]] = None  # previous compressed phase
        self.optimizer: Optional[torch.optim.Optimizer] = None

    @classmethod
    def from_config(cls, model: nn.Module, cfg) -> "Sparsifier":
        return cls(
            model,
            params=list(cfg.params),
            mask_type=str(cfg.mask_type),
            global_sparsity=bool(cfg.global_sparsity),
            reset_momentum=bool(cfg.reset_momentum),
            enabled=cfg.method != "dense",
        )

    def rebind(self, model: nn.Module) -> None:
        """Look the selected weights up by name again (QAT swaps modules but keeps names)."""
        named = dict(model.named_parameters())
        self._params = {n: named[n] for n in self.names}

    def attach_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer

    @property
    def active(self) -> bool:
        return self.masks is not None

    # --- hooks called by the trainer, in this order ----------------------------------------

    def begin_step(self, p: StepPlan) -> Optional[MaskUpdate]:
        if not self.names:
            return None
        if p.phase == "compressed":
            if p.update_masks or self.masks is None:
                return self._recompute(p)
            return None
        if self.masks is not None:
            self._enter_dense_phase()
        return None

    # masked_fill_ with a stored "pruned" mask, not mul_ by the bool mask: mixed-dtype mul_
    # converts every element and costs ~50x more on CPU (bench/bench_step_overhead.py)
    @torch.no_grad()
    def mask_gradients(self) -> None:
        if self.masks is None:
            return
        for n, pruned in self._pruned.items():
            g = self._params[n].grad
            if g is not None:
                g.masked_fill_(pruned, 0)

    @torch.no_grad()
    def apply_masks(self) -> None:
        if self.masks is None:
            return
        for n, pruned in self._pruned.items():
            self._params[n].masked_fill_(pruned, 0)

    def _set_masks(self, masks: Optional[Dict[str, torch.Tensor]]) -> None:
        self.masks = masks
        self._pruned = {} if masks is None else {n: ~m for n, m in masks.items()}

    # --- internals ------------------------------------------------------------------------

    @torch.no_grad()
    def _recompute(self, p: StepPlan) -> MaskUpdate:
        weights = [self._params[n].detach() for n in self.names]
        if self.global_sparsity:
            masks = compute_mask(weights, p.sparsity, self.mask_type)
        else:
            masks = [compute_mask(w, p.sparsity, self.mask_type) for w in weights]
        # all ranks must hold identical masks: weights are identical under DDP, and the
        # mask functions break ties deterministically, so no broadcast is needed here
        new = dict(zip(self.names, masks))
        reference = self.masks if self.masks is not None else self.last_masks
        self._set_masks(new)
        self.apply_masks()
        layer = {n: 1.0 - m.float().mean().item() for n, m in new.items()}
        total = sum(m.numel() for m in new.values())
        kept = sum(int(m.sum().item()) for m in new.values())
        update = MaskUpdate(p.step, p.epoch, p.sparsity, layer, 1.0 - kept / max(total, 1))
        if reference is not None:
            diffs = {n: (new[n] != reference[n]).float().mean().item() for n in new}
            update.layer_changed = diffs
            update.changed_fraction = sum(diffs[n] * new[n].numel() for n in new) / max(total, 1)
        return update

    @torch.no_grad()
    def _enter_dense_phase(self) -> None:
        assert self.masks is not None
        if self.reset_momentum and self.optimizer is not None:
            for n, pruned in self._pruned.items():
                buf = self.optimizer.state.get(self._params[n], {}).get("momentum_buffer")
                if buf is not None:
                    buf.masked_fill_(pruned, 0)
        self.last_masks = self.masks
        self._set_masks(None)

    # --- reporting and checkpoints ---------------------------------------------------------

    @torch.no_grad()
    def layer_sparsity(self) -> Dict[str, float]:
        """Actual zero fraction of every selected weight (what the model really holds)."""
        return {n: (self._params[n] == 0).float().mean().item() for n in self.names}

    def state_dict(self) -> dict:
        def cpu(d):
            return None if d is None else {k: v.cpu() for k, v in d.items()}

        return {"names": list(self.names), "masks": cpu(self.masks), "last_masks": cpu(self.last_masks)}

    def load_state_dict(self, state: dict) -> None:
        device = next(iter(self._params.values())).device if self._params else torch.device("cpu")

        def dev(d):
            return None if d is None else {k: v.to(device) for k, v in d.items()}

        self.names = list(state["names"])
        self._set_masks(dev(state["masks"]))
        self.last_masks = dev(state["last_masks"])
