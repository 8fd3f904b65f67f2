"""Dynamic sparse training's mask arithmetic (RigL, SET): per-layer sparsities, random masks and
one drop/grow update. Pure tensor code, as ``masks.py``: nothing here sees epochs, models or
optimizers.

The rules follow the RigL authors' public code (google-research/rigl, ``sparse_utils.py`` and
``sparse_optimizers.py``), where it fixes a detail the paper leaves open:

- a layer of ``n`` weights at sparsity ``s`` holds ``floor(s * n)`` zeros;
- Erdős–Rényi-Kernel (ERK) scales each layer's density by ``sum(shape) / prod(shape)``,
  solves one factor so that the layers keep as many weights as uniform sparsity would, and
  makes dense (and takes out of the solve) every layer whose density would exceed 1, the
  largest first, until none does;
- an update drops ``int(active * fraction)`` active weights (the count in float32, as the
  reference computes it) with the smallest magnitude and grows as many inactive ones with the
  largest score (``|dense gradient|`` for RigL, uniform noise for SET), where a weight dropped
  in this update may be grown back. Ties go to the lower flat index, the order of TF's
  ``top_k``. The reference adds N(0, 1e-5) noise to the drop scores to break them at random;
  here they break by index, so every rank finds the same masks without sharing a random stream.
"""

from __future__ import annotations

import math
from typing import Dict, Mapping, Sequence, Tuple

import torch
from torch import Tensor

from acdc_exp.errors import ConfigError

DISTRIBUTIONS = ("uniform", "erk")


def zeros_of(numel: int, sparsity: float) -> int:
    """How many of ``numel`` weights a layer at ``sparsity`` prunes: ``floor(sparsity * numel)``."""
    return int(math.floor(sparsity * numel))


def erk_sparsities(shapes: Mapping[str, Sequence[int]], sparsity: float, power_scale: float = 1.0) -> Dict[str, float]:
    """Per-layer sparsities of the Erdős–Rényi-Kernel distribution at overall ``sparsity``.

    A layer's density is ``eps * (sum(shape) / prod(shape)) ** power_scale``; ``eps`` is solved
    so that the layers keep the weights uniform ``sparsity`` keeps. A layer whose density would
    pass 1 is dense, and the layers still scaled make up for the zeros it does not have.
    """
    numel = {n: math.prod(int(d) for d in s) for n, s in shapes.items()}
    raw = {n: (sum(int(d) for d in s) / numel[n]) ** power_scale for n, s in shapes.items()}
    dense: set = set()
    while True:
        scaled = [n for n in shapes if n not in dense]
        if not scaled:
            raise ConfigError(f"sparsity.sparsity={sparsity} cannot be reached with ERK: every layer would be dense")
        kept = sum(numel[n] - zeros_of(numel[n], sparsity) for n in scaled)
        kept -= sum(zeros_of(numel[n], sparsity) for n in dense)  # the zeros the dense layers do not hold
        eps = kept / sum(raw[n] * numel[n] for n in scaled)
        top = max(raw[n] for n in scaled)
        if eps * top <= 1.0:
            return {n: 0.0 if n in dense else 1.0 - eps * raw[n] for n in shapes}
        dense.update(n for n in scaled if raw[n] == top)


def layer_sparsities(shapes: Mapping[str, Sequence[int]], sparsity: float, distribution: str) -> Dict[str, float]:
    """Each layer's sparsity under ``distribution`` (``uniform``: every layer at ``sparsity``)."""
    if distribution == "erk":
        return erk_sparsities(shapes, sparsity)
    return {n: float(sparsity) for n in shapes}


def random_mask(shape: Sequence[int], sparsity: float, generator: torch.Generator) -> Tensor:
    """A bool mask (True = kept) with ``floor(sparsity * n)`` zeros at random places, drawn on
    the CPU from ``generator`` (the same draw on every rank and device)."""
    n = math.prod(int(d) for d in shape)
    keep = torch.ones(n, dtype=torch.bool)
    keep[torch.randperm(n, generator=generator)[: zeros_of(n, sparsity)]] = False
    return keep.view(*shape)


def drop_count(active: int, fraction: float) -> int:
    """How many of ``active`` weights an update drops: ``int(active * fraction)``, both in float32
    (the reference's arithmetic: a float64 product can round across an integer)."""
    product = torch.tensor(float(active), dtype=torch.float32) * torch.tensor(float(fraction), dtype=torch.float32)
    return int(product.item())


def _first_largest(scores: Tensor, k: int) -> Tensor:
    """Flat indices of the ``k`` largest scores, ties to the lower index (a stable descending sort)."""
    if k <= 0:
        return torch.empty(0, dtype=torch.long, device=scores.device)
    return torch.sort(scores, descending=True, stable=True).indices[:k]


@torch.no_grad()
def drop_and_grow(mask: Tensor, weight: Tensor, grow_score: Tensor, fraction: float) -> Tuple[Tensor, Tensor]:
    """One update of one layer: the new mask and the grown connections (bool, ``mask``'s shape).

    Keeps the ``active - k`` active weights of largest ``|weight|`` (``k = drop_count``), then
    grows the ``k`` weights of largest ``grow_score`` among all that are not kept, so a weight
    dropped here may come straight back. The grown connections are those that were inactive
    before: the caller starts them at zero with no momentum (one dropped and grown back keeps
    its value, as in the reference)."""
    flat = mask.reshape(-1)
    k = drop_count(int(flat.sum()), fraction)
    if k == 0:
        return mask.clone(), torch.zeros_like(mask)
    kept_count = int(flat.sum()) - k
    drop_scores = (weight.reshape(-1) * flat).abs()
    kept = torch.zeros_like(flat)
    kept[_first_largest(drop_scores, kept_count)] = True
    grow_scores = grow_score.reshape(-1).to(drop_scores.dtype).masked_fill(kept, -math.inf)
    grown = torch.zeros_like(flat)
    grown[_first_largest(grow_scores, k)] = True
    new = (kept | grown).view(mask.shape)
    return new, (grown & ~flat).view(mask.shape)
