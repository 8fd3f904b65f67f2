"""Owns the masks of the selected weights and obeys the step plan.

It knows nothing about epochs: at each step it is told the phase, the target sparsity and
whether to recompute masks. In compressed phases the masks zero the pruned weights after
every optimizer step and their gradients before it; a dense phase drops the masks, and the
pruned weights regrow from exactly zero.

Two choices at the start of a dense phase are config (``sparsity.*``):

- ``reset_momentum``: ``all`` zeroes the SGD momentum buffer of every parameter in the
  optimizer after the dense phase's first optimizer step, as SparseML's
  ACDCPruningModifier does (its ``optimizer_post_step``); ``pruned`` zeroes the buffer
  entries of the pruned weights before that step; ``none`` keeps the momentum.
- ``dead_channels``: an output channel whose weights were all pruned feeds BatchNorm a
  constant, and BatchNorm's gradient to it is scaled by 1/sqrt(eps) (~316x): regrowing it
  is a jump, not a smooth re-introduction. ``keep_pruned`` holds such channels at zero
  through the dense phase (they may come back only through the next mask); ``regrow``
  regrows them like every other weight (SparseML).
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional

import torch
from torch import nn

from acdc_exp.errors import CheckpointError, ConfigError, check_choice
from acdc_exp.plan import StepPlan
from acdc_exp.plan.sparsity_schedule import COMPRESSED
from acdc_exp.records import MaskUpdate
from acdc_exp.sparsity.masks import compute_mask
from acdc_exp.sparsity.rank_agreement import check_ranks_agree
from acdc_exp.sparsity.selection import select_parameters
from acdc_exp.sparsity.stale_momentum import StaleMomentum

# masks (True = kept) of the selected weights at a target sparsity: a method's mask rule
MaskRule = Callable[[List[torch.Tensor], float], List[torch.Tensor]]

RESET_MOMENTUM = ("all", "pruned", "none")
DEAD_CHANNELS = ("regrow", "keep_pruned")


def check_count(key: str, value: object) -> int:
    """One line for a count that must be an integer >= 0 (config and constructor share it)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"sparsity.{key}={value!r} is not allowed; allowed: an integer >= 0")
    return value


def like_param(mask: torch.Tensor, param: torch.Tensor, dtype: Optional[torch.dtype] = None, name: str = "") -> torch.Tensor:
    """``mask`` as ``dtype`` (default: its own) on ``param``'s device with ``param``'s strides.

    Masks are computed and checkpointed NCHW; a channels_last weight is NHWC. With different
    strides ``_foreach_mul_`` leaves its fast path for a strided copy per tensor, so every
    stored mask follows its weight's layout (checkpoints stay NCHW: see state_dict).
    """
    if mask.shape != param.shape:
        raise CheckpointError(f"mask of {name or 'a weight'} has shape {tuple(mask.shape)}; its weight has {tuple(param.shape)}")
    dtype = mask.dtype if dtype is None else dtype
    if mask.dtype == dtype and mask.device == param.device and mask.stride() == param.stride():
        return mask
    out = torch.empty_like(param, dtype=dtype)  # dense param: empty_like keeps its strides
    out.copy_(mask)
    return out


def dead_output_channels(mask: torch.Tensor) -> torch.Tensor:
    """Bool per output channel (dim 0): True where the mask prunes the whole channel."""
    return ~mask.reshape(mask.shape[0], -1).any(dim=1)


class Sparsifier:
    def __init__(
        self,
        model: nn.Module,
        *,
        params: List[str],
        mask_type: str = "unstructured",
        global_sparsity: bool = False,
        reset_momentum: str = "all",
        dead_channels: str = "regrow",
        min_kept_per_channel: int = 0,
        mask_rule: Optional[MaskRule] = None,
    ) -> None:
        self.min_kept_per_channel = check_count("min_kept_per_channel", min_kept_per_channel)
        self.mask_type = mask_type
        self.global_sparsity = global_sparsity
        self.reset_momentum = check_choice("sparsity.reset_momentum", reset_momentum, RESET_MOMENTUM)
        self.dead_channels = check_choice("sparsity.dead_channels", dead_channels, DEAD_CHANNELS)
        # a method's own rule (sparsity/methods/); by default magnitude masks of mask_type
        self.mask_rule: MaskRule = mask_rule or self._magnitude_masks
        self.names: List[str] = [n for n, _ in select_parameters(model, params)] if params else []
        self._params: Dict[str, nn.Parameter] = {}
        self.masks: Optional[Dict[str, torch.Tensor]] = None  # True = kept
        # what the hooks multiply by: 1.0 kept, 0.0 zeroed, in each weight's dtype (the
        # compressed phase's masks, or a dense phase's held-dead channels)
        self._keep: Dict[str, torch.Tensor] = {}
        self._reset_all_after_step = False
        self.stale_momentum = StaleMomentum()  # when the weight pass after the step can be skipped
        self.last_masks: Optional[Dict[str, torch.Tensor]] = None  # previous compressed phase
        self.rebind(model)
        self.optimizer: Optional[torch.optim.Optimizer] = None

    def rebind(self, model: nn.Module) -> None:
        """Look the selected weights up by name again (QAT swaps modules but keeps names)."""
        named = dict(model.named_parameters())
        self._params = {n: named[n] for n in self.names}
        # the new weights may have another layout or device (a swapped module, channels_last)
        self.masks = self._like_params(self.masks)
        self.last_masks = self._like_params(self.last_masks)
        self._set_keep(self._keep)

    def attach_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer

    # --- hooks called by the trainer, in this order ----------------------------------------

    def begin_step(self, p: StepPlan) -> Optional[MaskUpdate]:
        if not self.names:
            return None
        if p.masks.phase == COMPRESSED:
            if p.masks.update or self.masks is None:
                return self._recompute(p)
            self.stale_momentum.maybe_settle(self.optimizer, self._params, self._keep, p.step)
            return None
        if self.masks is not None:
            self._enter_dense_phase()
        return None

    def update_after_backward(self, p: StepPlan) -> Optional[MaskUpdate]:
        """A mask update that reads this step's dense gradients (RigL's grow), made after the
        backward pass and before the gradients are masked. It takes the place of the step's
        optimizer step: its record comes back and the step skips the optimizer. None: no such
        update (every method that recomputes masks from the weights alone, in ``begin_step``)."""
        return None

    # One multiply per weight by a float 0/1 mask, batched with _foreach_mul_ (torch.optim's own
    # primitive): a bool masked_fill_ costs several times more on CPU (hook_pass_forms_median_s
    # in bench/results/step_overhead.json). A pruned negative weight becomes -0.0, which is == 0.
    @torch.no_grad()
    def mask_gradients(self) -> None:
        if not self._keep:
            return
        pairs = [(self._params[n].grad, k) for n, k in self._keep.items() if self._params[n].grad is not None]
        if pairs:
            torch._foreach_mul_([g for g, _ in pairs], [k for _, k in pairs])

    @torch.no_grad()
    def apply_masks(self) -> None:
        if self._keep:
            torch._foreach_mul_([self._params[n] for n in self._keep], list(self._keep.values()))

    @torch.no_grad()
    def end_step(self) -> None:
        """After the optimizer step: zero the pruned weights again (unless SGD provably kept
        them at zero: stale_momentum.py), and do SparseML's all-parameter momentum reset on
        the first step of a dense phase."""
        if not self.stale_momentum.settled:
            self.apply_masks()
        if self._reset_all_after_step:
            self._reset_all_after_step = False
            if self.optimizer is not None:
                for state in self.optimizer.state.values():
                    buf = state.get("momentum_buffer")
                    if buf is not None:
                        buf.zero_()

    def _like_params(self, masks: Optional[Dict[str, torch.Tensor]]) -> Optional[Dict[str, torch.Tensor]]:
        if masks is None:
            return None
        return {n: like_param(m, self._params[n], name=n) for n, m in masks.items()}

    def _set_masks(self, masks: Optional[Dict[str, torch.Tensor]]) -> None:
        self.masks = self._like_params(masks)
        self._set_keep(self.masks or {})

    def _set_keep(self, masks: Dict[str, torch.Tensor]) -> None:
        self._keep = {n: like_param(m, self._params[n], self._params[n].dtype, n) for n, m in masks.items()}

    def _dense_phase_holds(self) -> Dict[str, torch.Tensor]:
        """With dead_channels=keep_pruned: masks that keep only the channels the last
        compressed phase pruned whole at zero (only for weights that have such channels)."""
        if self.dead_channels != "keep_pruned" or self.last_masks is None:
            return {}
        holds = {}
        for n, m in self.last_masks.items():
            dead = dead_output_channels(m)
            if m.dim() > 1 and bool(dead.any()):
                holds[n] = (~dead).view(-1, *([1] * (m.dim() - 1))).expand_as(m).clone()
        return holds

    # --- internals ------------------------------------------------------------------------

    @torch.no_grad()
    def _recompute(self, p: StepPlan) -> MaskUpdate:
        weights = [self._params[n].detach() for n in self.names]
        return self._replace_masks(p, self.mask_rule(weights, p.masks.sparsity))

    @torch.no_grad()
    def _replace_masks(self, p: StepPlan, masks: List[torch.Tensor]) -> MaskUpdate:
        """Put ``masks`` (one per selected weight, in ``names`` order) in force, check that every
        rank computed the same ones, and say what changed."""
        masks = [m.bool() for m in masks]
        # every rank must hold identical masks; the weights are identical under DDP and the mask
        # functions break ties deterministically, and the checksum proves it at every update
        checksum = check_ranks_agree(self.names, masks, p.step)
        reference = self.masks if self.masks is not None else self.last_masks
        self._set_masks(dict(zip(self.names, masks)))
        new = self.masks
        self.apply_masks()
        self.stale_momentum.start(self.optimizer, self._params, self._keep, p.step)
        layer = {n: 1.0 - m.float().mean().item() for n, m in new.items()}
        total = sum(m.numel() for m in new.values())
        kept = sum(int(m.sum().item()) for m in new.values())
        update = MaskUpdate(p.step, p.epoch, p.masks.sparsity, layer, 1.0 - kept / max(total, 1), checksum=checksum)
        if reference is not None:
            diffs = {n: (new[n] != reference[n]).float().mean().item() for n in new}
            update.layer_changed = diffs
            update.changed_fraction = sum(diffs[n] * new[n].numel() for n in new) / max(total, 1)
        return update

    def _magnitude_masks(self, weights: List[torch.Tensor], sparsity: float) -> List[torch.Tensor]:
        floor = self.min_kept_per_channel
        if self.global_sparsity:
            return compute_mask(weights, sparsity, self.mask_type, floor)
        return [compute_mask(w, sparsity, self.mask_type, floor) for w in weights]

    @torch.no_grad()
    def _enter_dense_phase(self) -> None:
        assert self.masks is not None
        if self.reset_momentum == "pruned" and self.optimizer is not None:
            for n, m in self.masks.items():
                buf = self.optimizer.state.get(self._params[n], {}).get("momentum_buffer")
                if buf is not None:
                    buf.masked_fill_(~m, 0)
        self._reset_all_after_step = self.reset_momentum == "all"
        self.stale_momentum.stop()
        self.last_masks = self.masks
        self._set_masks(None)
        self._set_keep(self._dense_phase_holds())

    # --- reporting and checkpoints ---------------------------------------------------------

    @torch.no_grad()
    def layer_sparsity(self) -> Dict[str, float]:
        """Actual zero fraction of every selected weight (what the model really holds)."""
        return {n: (self._params[n] == 0).float().mean().item() for n in self.names}

    def state_dict(self) -> dict:
        def cpu(d):
            # NCHW whatever the weights' layout: a checkpoint loads into either layout
            return None if d is None else {k: v.cpu().contiguous() for k, v in d.items()}

        if self.stale_momentum.settled and any(bool((self._params[n] * (1 - k)).any()) for n, k in self._keep.items()):
            # cannot happen with torch.optim.SGD; a checkpoint must never hold a broken mask
            raise RuntimeError("pruned weights moved while the weight pass was skipped (sparsity/stale_momentum.py)")
        return {
            "names": list(self.names),
            "masks": cpu(self.masks),
            "last_masks": cpu(self.last_masks),
            "stale": self.stale_momentum.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        other = sorted(set(state["names"]) ^ set(self.names))
        if other:  # reachable with trainer.resume_force=true: the fingerprint names it otherwise
            raise CheckpointError(
                f"the checkpoint's masks cover other layers than sparsity.params selects here (e.g. {other[0]}); "
                "allowed: the same sparsity.params as the run that wrote it"
            )
        self.names = list(state["names"])
        # each mask moves to its weight's device and layout, whichever layout it was saved in
        self.last_masks = self._like_params(state["last_masks"])
        self._set_masks(state["masks"])
        if self.masks is None:  # in a dense phase: its holds follow from the last masks
            self._set_keep(self._dense_phase_holds())
        self.stale_momentum.load_state_dict(state.get("stale"))
