"""When the hooks may skip re-zeroing the pruned weights after the optimizer step.

SparseML masks the gradients before the step and the weights after it, every step. With
torch.optim.SGD a pruned weight (0) with a masked gradient (0) and weight decay (0 * wd = 0)
is moved only by the momentum its entry held when it was pruned: ``buf <- momentum * buf``.
SparseML lets that stale momentum decay and re-zeroes the weight after every step. Once
every stale entry has decayed below float's normal range, acdc-exp sets those subnormal
entries to zero (the one difference from SparseML: momentum values under ~1e-38 that it
carries and this drops). From then on SGD provably keeps the pruned weights at exactly zero,
and the hooks make one pass per step (the gradients) instead of two. Other optimizers
always get both passes.
"""

from __future__ import annotations

import math
from typing import Dict, Optional

import torch

# after an early check finds stale momentum still above the normal range, look again this
# many steps later (the decay estimate assumes the largest momentum of any group)
RECHECK_STEPS = 64


def _eligible(optimizer: Optional[torch.optim.Optimizer]) -> bool:
    return isinstance(optimizer, torch.optim.SGD) and all(g.get("momentum", 0.0) < 1.0 for g in optimizer.param_groups)


class StaleMomentum:
    """Tracks, per compressed phase, whether the pruned entries' momentum is settled at 0."""

    def __init__(self) -> None:
        self.settled = False
        self.check_at: Optional[int] = None

    def state_dict(self) -> dict:
        return {"settled": self.settled, "check_at": self.check_at}

    def load_state_dict(self, state: Optional[dict]) -> None:
        state = state or {}
        self.settled = bool(state.get("settled", False))
        self.check_at = state.get("check_at")

    def stop(self) -> None:
        self.settled, self.check_at = False, None

    @torch.no_grad()
    def _largest(self, optimizer: torch.optim.Optimizer, params: Dict[str, torch.Tensor], keep: Dict[str, torch.Tensor]) -> float:
        largest = 0.0
        for n, k in keep.items():
            buf = optimizer.state.get(params[n], {}).get("momentum_buffer")
            if buf is not None:
                largest = max(largest, float((buf.abs() * (1 - k)).max()))
        return largest

    def start(
        self,
        optimizer: Optional[torch.optim.Optimizer],
        params: Dict[str, torch.Tensor],
        keep: Dict[str, torch.Tensor],
        step: int,
    ) -> None:
        """New masks at ``step``: estimate when the newly pruned entries' momentum is subnormal."""
        self.stop()
        if not _eligible(optimizer) or not keep:
            return
        largest = self._largest(optimizer, params, keep)
        momentum = max(g.get("momentum", 0.0) for g in optimizer.param_groups)
        if largest == 0.0 or momentum == 0.0:
            self.settled = True
            return
        tiny = torch.finfo(next(iter(keep.values())).dtype).tiny
        self.check_at = step + max(1, math.ceil(math.log(tiny / largest) / math.log(momentum)))

    @torch.no_grad()
    def maybe_settle(
        self,
        optimizer: Optional[torch.optim.Optimizer],
        params: Dict[str, torch.Tensor],
        keep: Dict[str, torch.Tensor],
        step: int,
    ) -> None:
        if self.settled or self.check_at is None or step < self.check_at or optimizer is None:
            return
        tiny = torch.finfo(next(iter(keep.values())).dtype).tiny
        if self._largest(optimizer, params, keep) >= tiny:
            self.check_at = step + RECHECK_STEPS
            return
        for n, k in keep.items():
            buf = optimizer.state.get(params[n], {}).get("momentum_buffer")
            if buf is not None:
                buf.mul_(k)
        self.settled, self.check_at = True, None
