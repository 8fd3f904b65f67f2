"""Proof that every rank holds the same masks: a checksum of all masks, compared across ranks at
every mask computation (AC/DC's and GMP's recomputes, RigL's start and updates).

Under DDP the ranks' weights are identical and the mask functions break ties by index, so the
masks must agree; a rank whose seed, tie-break or data differs would otherwise train another
sparse model in silence while DDP averages its gradients into everyone's. One all-reduce of two
integers per layer: cheap next to the mask computation itself.
"""

from __future__ import annotations

from typing import List, Sequence

import torch
from torch import Tensor

from acdc_exp.errors import AcdcError

# positions hash to (i + 1) * _MULT mod _MOD: a kept weight's place and the count both count
_MULT = 2654435761
_MOD = 2147483647


class MaskMismatchError(AcdcError):
    """Ranks computed different masks. Every rank finds it at the same collective, so only
    rank 0 says it (``every_rank``: the command-line tools print it once from rank 0, and the
    other ranks leave quietly with 0, so the launcher waits for rank 0's line)."""

    every_rank = True


def mask_checksum(mask: Tensor) -> Tensor:
    """An int64 checksum of one bool mask, in its logical (NCHW) order whatever its layout."""
    kept = torch.nonzero(mask.reshape(-1)).squeeze(1)
    return ((kept + 1) * _MULT % _MOD).sum()


def check_ranks_agree(names: Sequence[str], masks: Sequence[Tensor], step: int) -> str:
    """The masks' checksum (8 hex digits); under torch.distributed, first check that every rank
    has the same per-layer checksums, and stop with one line naming the first layer that differs."""
    if not masks:
        return "0" * 8
    local = torch.stack([mask_checksum(m) for m in masks])
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        both = torch.cat([local, -local])  # one MAX gives the largest and (negated) the smallest
        if dist.get_backend() == "nccl" and both.device.type != "cuda":  # NCCL reduces CUDA tensors only
            both = both.to(torch.device("cuda", torch.cuda.current_device()))
        dist.all_reduce(both, op=dist.ReduceOp.MAX)
        differ: List[int] = torch.nonzero(both[: len(masks)] != -both[len(masks) :]).squeeze(1).tolist()
        if differ:
            raise MaskMismatchError(
                f"the ranks computed different masks at step {step}: first layer that differs: {names[differ[0]]} "
                f"({len(differ)} of {len(masks)} layers differ); every rank must build masks from the same seed and weights"
            )
    return f"{int(local.sum().item()) % (1 << 32):08x}"
