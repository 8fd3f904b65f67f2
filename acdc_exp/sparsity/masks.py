"""Magnitude pruning masks: which weights survive at a given sparsity.

Pure tensor code: it knows nothing about epochs, models or optimizers. A mask is a bool tensor
of the weight's shape, True = kept.

Mask types
----------
``unstructured``
    Each weight is a unit, scored by ``|w|``.
``block4``
    A unit is 4 consecutive *input* channels at a fixed (out, kh, kw) position of a conv weight
    ``[out, in, kh, kw]`` (for a Linear weight ``[out, in]``: 4 consecutive inputs of a row).
    The score is the mean ``|w|`` of the block and the block is kept or pruned as a whole.
    When ``in % 4 = r != 0`` the last block of every row is a partial block of ``r`` real
    weights; it is scored as if padded to 4 with copies of the mean ``|w|`` of its real members,
    i.e. its score is exactly that mean, and the (virtual) padding never reaches the mask.
``N:M`` (e.g. ``"2:4"``)
    In every group of M consecutive input channels (same grouping as ``block4``) the N largest
    ``|w|`` are kept. The pattern fixes the sparsity, so the ``sparsity`` argument must equal
    ``1 - N/M`` (an inconsistent value is a ConfigError rather than silently ignored, because
    it almost always means a config that was meant for another mask type). The input-channel
    count must be divisible by M.

Counting and ties
-----------------
For ``unstructured`` and ``block4`` exactly ``round(sparsity * units)`` units are pruned
(Python's ``round``; with a list of tensors the count is over all of them together: one
global threshold). Units are ordered by (score, flat index) and the first ones are pruned, as a
stable ascending sort would do, so equal scores give the same mask on every device. Block
scores are sums of explicit slices (elementwise adds in a fixed order) for the same reason.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import List, Sequence, Tuple, Union, overload

import torch
from torch import Tensor

from acdc_exp.errors import ConfigError

BLOCK = 4
ALLOWED_MASK_TYPES = "unstructured, block4, N:M such as 2:4"
_NM_RE = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")
# |sparsity - (1 - N/M)| below this counts as equal (configs write 0.5, 0.75, 0.6666...)
_NM_SPARSITY_TOL = 1e-6


@dataclass(frozen=True)
class MaskType:
    """A parsed mask type: ``kind`` is unstructured | block | nm; ``n``/``m`` only for nm."""

    kind: str
    n: int = 0
    m: int = 0

    @property
    def pattern_sparsity(self) -> float:
        """The sparsity an N:M pattern implies (only meaningful for ``nm``)."""
        return 1.0 - self.n / self.m


def parse_mask_type(mask_type: str) -> MaskType:
    """Parse ``unstructured`` / ``block4`` / ``"N:M"``; anything else is a ConfigError."""
    if not isinstance(mask_type, str):
        raise ConfigError(f"mask_type={mask_type!r} is not a string; allowed: {ALLOWED_MASK_TYPES}")
    name = mask_type.strip().lower()
    if name == "unstructured":
        return MaskType("unstructured")
    if name == "block4":
        return MaskType("block")
    match = _NM_RE.match(name)
    if match:
        n, m = int(match.group(1)), int(match.group(2))
        if m < 1 or not 1 <= n <= m:
            raise ConfigError(f"mask_type={mask_type!r} is not a valid N:M pattern; allowed: 1 <= N <= M")
        return MaskType("nm", n, m)
    raise ConfigError(f"mask_type={mask_type!r} is unknown; allowed: {ALLOWED_MASK_TYPES}")


def check_sparsity(sparsity: float, mask_type: str = "unstructured") -> MaskType:
    """Validate ``sparsity`` (and its agreement with an N:M pattern); return the parsed type."""
    kind = parse_mask_type(mask_type)
    try:
        value = float(sparsity)
    except (TypeError, ValueError):
        raise ConfigError(f"sparsity={sparsity!r} is not a number; allowed: 0 <= sparsity <= 1") from None
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ConfigError(f"sparsity={sparsity} is out of range; allowed: 0 <= sparsity <= 1")
    if kind.kind == "nm" and abs(value - kind.pattern_sparsity) > _NM_SPARSITY_TOL:
        raise ConfigError(
            f"sparsity={sparsity} does not match mask_type={mask_type!r}; "
            f"allowed: {kind.pattern_sparsity:g} (= 1 - {kind.n}/{kind.m})"
        )
    return kind


@overload
def compute_mask(weight: Tensor, sparsity: float, mask_type: str = ..., min_kept_per_channel: int = ...) -> Tensor: ...


@overload
def compute_mask(
    weight: Sequence[Tensor], sparsity: float, mask_type: str = ..., min_kept_per_channel: int = ...
) -> List[Tensor]: ...


def compute_mask(
    weight: Union[Tensor, Sequence[Tensor]], sparsity: float, mask_type: str = "unstructured", min_kept_per_channel: int = 0
) -> Union[Tensor, List[Tensor]]:
    """Magnitude mask (True = kept) of ``weight`` at ``sparsity``.

    A single tensor gives one mask; a sequence of tensors gives a list of masks computed with
    one global threshold over all of them (N:M is per group, so there it is the same as
    computing each mask alone).

    ``min_kept_per_channel`` = k > 0 keeps the k largest units (weights, or blocks for block4)
    of every output channel (dim 0) before the rest compete by magnitude, as far as the
    pruning count allows (the count is unchanged). Under BatchNorm a channel's scale carries no
    meaning, so magnitudes of different channels are not comparable; a channel pruned whole
    feeds BatchNorm a constant. N:M keeps N of every group, so it needs no floor.
    """
    kind = check_sparsity(sparsity, mask_type)
    single = isinstance(weight, Tensor)
    weights = [weight] if single else list(weight)
    if not weights:
        raise ConfigError("compute_mask got an empty list of weights; allowed: one or more tensors")
    weights = [w.detach() for w in weights]

    if kind.kind == "nm":
        masks = [_nm_mask(w, kind.n, kind.m) for w in weights]
    else:
        block = kind.kind == "block"
        # block: (scores [out, blocks, rest], partial-block width); unstructured: (|w|, 0)
        scored = [_block_scores(w) if block else (_abs_scores(w), 0) for w in weights]
        if min_kept_per_channel > 0:
            scored = _with_channel_floor(scored, int(min_kept_per_channel))
        flat = torch.cat([s.reshape(-1) for s, _ in scored]) if len(scored) > 1 else scored[0][0].reshape(-1)
        keep = _keep_largest(flat, round(float(sparsity) * flat.numel()))
        masks, start = [], 0
        for w, (s, partial) in zip(weights, scored):
            part = keep[start : start + s.numel()].view(s.shape)
            start += s.numel()
            masks.append(_expand_block_mask(part, w, partial) if block else part)
    return masks[0] if single else masks


def mask_sparsity(mask: Union[Tensor, Sequence[Tensor]]) -> float:
    """Fraction of pruned (False) entries; over all masks together for a sequence."""
    masks = [mask] if isinstance(mask, Tensor) else list(mask)
    total = sum(m.numel() for m in masks)
    if total == 0:
        return 0.0
    kept = sum(int(m.count_nonzero()) for m in masks)
    return 1.0 - kept / total


# ---------------------------------------------------------------------------------------------
# internals


def _score_dtype(dtype: torch.dtype) -> torch.dtype:
    # half/bfloat16 sums of 4 lose ordering precision; float64 stays float64
    return torch.float64 if dtype == torch.float64 else torch.float32


def _with_channel_floor(scored: List[Tuple[Tensor, int]], k: int) -> List[Tuple[Tensor, int]]:
    """Lift the k largest scores of every output channel above all others (their order among
    themselves kept), so that they are pruned last. A stable sort picks them: ties go to the
    lower index on every device."""
    lift = 1.0 + max(float(s.max()) for s, _ in scored)
    out = []
    for s, partial in scored:
        rows = s.reshape(s.shape[0], -1)
        top = torch.sort(rows, dim=1, descending=True, stable=True).indices[:, : min(k, rows.shape[1])]
        bumped = rows.clone()
        bumped.scatter_add_(1, top, torch.full(top.shape, lift, dtype=rows.dtype, device=rows.device))
        out.append((bumped.view(s.shape), partial))
    return out


def _abs_scores(weight: Tensor) -> Tensor:
    return weight.abs().to(_score_dtype(weight.dtype))


def _rows_view(weight: Tensor, what: str) -> Tuple[int, int, int]:
    """(out, in, rest) of a weight whose dim 1 is the input-channel dim."""
    if weight.ndim < 2:
        raise ConfigError(
            f"{what} needs a weight with an input-channel dim; got shape {tuple(weight.shape)}; "
            "allowed: Linear [out, in] or Conv [out, in, kh, kw]"
        )
    out, cin = weight.shape[0], weight.shape[1]
    rest = math.prod(weight.shape[2:])
    return out, cin, rest


def _block_scores(weight: Tensor) -> Tuple[Tensor, int]:
    """Per-block scores ``[out, ceil(in/4), rest]`` and the partial-block width (0 if none).

    Viewing as ``[out, in, rest]`` keeps (out, kh, kw) fixed while stepping along input
    channels, without a permuted copy of the weight.
    """
    out, cin, rest = _rows_view(weight, "mask_type 'block4'")
    a = _abs_scores(weight).reshape(out, cin, rest)
    full, partial = divmod(cin, BLOCK)
    parts = []
    if full:
        blocks = a[:, : full * BLOCK].view(out, full, BLOCK, rest)
        s = blocks[:, :, 0]
        for j in range(1, BLOCK):
            s = s + blocks[:, :, j]
        parts.append(s / BLOCK)
    if partial:
        tail = a[:, full * BLOCK :]
        s = tail[:, 0:1]
        for j in range(1, partial):
            s = s + tail[:, j : j + 1]
        # padding with the mean of the real members gives a block mean equal to that mean
        parts.append(s / partial)
    scores = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
    return scores, partial


def _expand_block_mask(block_keep: Tensor, weight: Tensor, partial: int) -> Tensor:
    """Broadcast a ``[out, blocks, rest]`` keep tensor back to the weight's shape."""
    out, cin, rest = weight.shape[0], weight.shape[1], math.prod(weight.shape[2:])
    full = cin // BLOCK
    pieces = []
    if full:
        pieces.append(block_keep[:, :full, None, :].expand(out, full, BLOCK, rest).reshape(out, full * BLOCK, rest))
    if partial:
        pieces.append(block_keep[:, full:, :].expand(out, partial, rest))
    mask = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1)
    return mask.reshape(weight.shape)


def _keep_largest(scores: Tensor, n_prune: int) -> Tensor:
    """Bool keep-mask of a 1-D score tensor with the ``n_prune`` lowest (score, index) pruned.

    Same result as a stable ascending sort, without sorting millions of scores: find the
    ``n_prune``-th smallest value, prune everything below it, and among the values equal to it
    prune the earliest by flat index.
    """
    n = scores.numel()
    if n_prune <= 0:
        return torch.ones(n, dtype=torch.bool, device=scores.device)
    if n_prune >= n:
        return torch.zeros(n, dtype=torch.bool, device=scores.device)
    threshold = _kth_smallest(scores, n_prune)
    prune = scores < threshold
    at_threshold = scores == threshold
    still_needed = n_prune - int(prune.count_nonzero())
    if int(at_threshold.count_nonzero()) > still_needed:
        # more ties than slots: prune the earliest ones by flat index
        tied = torch.nonzero(at_threshold).squeeze(1)[:still_needed]
        prune[tied] = True
    else:
        prune |= at_threshold
    return ~prune


# below this many scores a direct selection is already cheap
_BRACKET_MIN = 1 << 18
_SAMPLE = 1 << 16


def _kth_exact(values: Tensor, k: int) -> Tensor:
    """The k-th smallest (1-based) value of a 1-D tensor: the largest of its k smallest values.

    torch.kthvalue (and median/mode) have no deterministic CUDA kernel and raise under
    ``torch.use_deterministic_algorithms(True)``; topk does not. Which of several tied
    elements topk returns may vary, but the multiset of the k smallest values does not, so
    its max is the same on every device. Always ``largest=False``: a NaN then reaches the max
    only when the k-th value itself is NaN, exactly as kthvalue would report it.
    """
    return torch.topk(values, k, largest=False, sorted=False).values.max()


def _kth_smallest(scores: Tensor, k: int) -> Tensor:
    """The k-th smallest (1-based) value of a 1-D tensor, as a 0-d tensor.

    A full selection over millions of scores dominates mask time. A strided sample brackets
    the answer, so the exact selection runs only on the few scores inside the bracket. The
    sample only affects speed: the bracket is checked against exact counts and a miss falls
    back to a selection over all scores.
    """
    n = scores.numel()
    if n < _BRACKET_MIN:
        return _kth_exact(scores, k)
    sample = scores[:: n // _SAMPLE]
    m = sample.numel()
    # +-1% of ranks around the target quantile: ~25 standard errors of the sample quantile
    q = k / n
    lo_rank = max(1, int((q - 0.01) * m))
    hi_rank = min(m, int((q + 0.01) * m) + 1)
    # sorted values are the same on every device (only tied indices could differ)
    ordered = torch.sort(sample).values
    lo, hi = ordered[lo_rank - 1], ordered[hi_rank - 1]
    below = int((scores < lo).count_nonzero())
    band = scores[(scores >= lo) & (scores <= hi)]
    if below < k <= below + band.numel():
        return _kth_exact(band, k - below)
    return _kth_exact(scores, k)


def _nm_mask(weight: Tensor, n: int, m: int) -> Tensor:
    """Keep the n largest |w| of every m consecutive input channels (ties: lower index pruned)."""
    out, cin, rest = _rows_view(weight, f"mask_type '{n}:{m}'")
    if cin % m:
        raise ConfigError(
            f"mask_type '{n}:{m}' needs input channels divisible by {m}; layer with weight shape {tuple(weight.shape)} has {cin}"
        )
    if n == m:
        return torch.ones_like(weight, dtype=torch.bool)
    # groups on the last dim: [out, rest, in/m, m]
    a = _abs_scores(weight).reshape(out, cin // m, m, rest).permute(0, 3, 1, 2)
    order = torch.sort(a, dim=-1, stable=True).indices
    keep = torch.ones(a.shape, dtype=torch.bool, device=weight.device)
    keep.scatter_(-1, order[..., : m - n], False)
    return keep.permute(0, 2, 3, 1).reshape(weight.shape)
