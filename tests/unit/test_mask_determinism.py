"""Masks use only ops with a deterministic CUDA kernel, and still equal a plain stable sort.

``trainer.deterministic=true`` turns on ``torch.use_deterministic_algorithms(True)``; on CUDA an
op without a deterministic kernel (kthvalue, median, ...) then raises at the first mask. CPU
kernels never raise, so the test records the aten ops a mask computation dispatches and checks
them against the ops torch flags on CUDA.
"""

from __future__ import annotations

from typing import Dict, List, Set

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from acdc_exp.sparsity import masks as masks_mod
from acdc_exp.sparsity.masks import compute_mask

torch.set_num_threads(1)

aten = torch.ops.aten

# ops that raise on CUDA under use_deterministic_algorithms(True) (alertNotDeterministic in
# ATen, and the list in torch.use_deterministic_algorithms' docstring), plus the ones whose
# determinism depends on arguments we would rather not rely on
_NONDETERMINISTIC_ON_CUDA = {
    aten.kthvalue,
    aten.median,
    aten.nanmedian,
    aten.mode,
    aten.histc,
    aten.bincount,
    aten.put,
    aten.put_,
    aten.scatter_reduce,
    aten.index_reduce,
    aten.max_unpool2d,
    aten.max_unpool3d,
}


class _RecordOps(TorchDispatchMode):
    """Collect the aten overload packets dispatched while active."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Set[object] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        self.ops.add(func.overloadpacket)
        return func(*args, **(kwargs or {}))


def _ints(*shape: int, seed: int) -> torch.Tensor:
    # integer values: block sums are exact, so the reference ranks blocks exactly as masks.py
    # does, and the many ties exercise the flat-index tie rule
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-40, 41, shape, generator=g).float()


def _ref_keep(scores: torch.Tensor, n_prune: int) -> torch.Tensor:
    flat = scores.reshape(-1)
    keep = torch.ones(flat.numel(), dtype=torch.bool)
    keep[torch.sort(flat, stable=True).indices[:n_prune]] = False
    return keep


def _ref_block_scores(w: torch.Tensor) -> torch.Tensor:
    """[out, ceil(in/4), rest] mean |w| per block; a partial block is the mean of its members."""
    out, cin = w.shape[:2]
    a = w.abs().reshape(out, cin, -1)
    cols = []
    for start in range(0, cin, 4):
        blk = a[:, start : start + 4]
        cols.append(blk.sum(1) / blk.shape[1])
    return torch.stack(cols, dim=1)


def _ref_block_mask(block_keep: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    cin = w.shape[1]
    idx = torch.arange(cin) // 4
    return block_keep[:, idx].reshape(w.shape)


def _reference(weights: List[torch.Tensor], sparsity: float, mask_type: str) -> List[torch.Tensor]:
    if ":" in mask_type:
        n, m = (int(v) for v in mask_type.split(":"))
        out = []
        for w in weights:
            a = w.abs().reshape(w.shape[0], w.shape[1] // m, m, -1).transpose(2, 3)
            keep = torch.ones(a.shape, dtype=torch.bool)
            keep.scatter_(-1, torch.sort(a, dim=-1, stable=True).indices[..., : m - n], False)
            out.append(keep.transpose(2, 3).reshape(w.shape))
        return out
    block = mask_type == "block4"
    scores = [_ref_block_scores(w) if block else w.abs() for w in weights]
    flat = torch.cat([s.reshape(-1) for s in scores])
    keep = _ref_keep(flat, round(sparsity * flat.numel()))
    out, start = [], 0
    for w, s in zip(weights, scores):
        part = keep[start : start + s.numel()].view(s.shape)
        start += s.numel()
        out.append(_ref_block_mask(part, w) if block else part)
    return out


def _layers(big: bool) -> List[torch.Tensor]:
    # big: > 2**18 units in total (also as blocks), so the sampled-bracket path runs
    conv = (256, 256, 4, 4) if big else (16, 12, 3, 3)
    return [_ints(*conv, seed=1), _ints(24, 18, 3, 3, seed=2), _ints(10, 64, seed=3)]


_CASES = [("unstructured", 0.3), ("unstructured", 0.9), ("block4", 0.5), ("block4", 0.95), ("2:4", 0.5), ("1:4", 0.75)]


def _run(fn) -> Dict[str, object]:  # noqa: ANN001
    rec = _RecordOps()
    with rec:
        result = fn()
    return {"ops": rec.ops, "result": result}


@pytest.mark.parametrize("big", [False, True], ids=["small", "bracketed"])
@pytest.mark.parametrize("mask_type,sparsity", _CASES)
def test_masks_use_only_deterministic_cuda_ops_and_match_reference(mask_type, sparsity, big):
    layers = _layers(big)
    if ":" in mask_type:
        layers = [w for w in layers if w.shape[1] % 4 == 0]
    glob = _run(lambda: compute_mask(layers, sparsity, mask_type))
    per_layer = _run(lambda: [compute_mask(w, sparsity, mask_type) for w in layers])
    floored = _run(lambda: compute_mask(layers, sparsity, mask_type, min_kept_per_channel=1))
    for run in (glob, per_layer, floored):
        assert not run["ops"] & _NONDETERMINISTIC_ON_CUDA, sorted(map(str, run["ops"] & _NONDETERMINISTIC_ON_CUDA))
    # the recorder really saw the selection (guards against a mode that records nothing)
    assert aten.topk in glob["ops"] or aten.sort in glob["ops"]
    for got, want in zip(glob["result"], _reference(layers, sparsity, mask_type)):
        assert torch.equal(got, want)
    for got, w in zip(per_layer["result"], layers):
        assert torch.equal(got, _reference([w], sparsity, mask_type)[0])


def test_bracket_miss_falls_back_without_kthvalue():
    # every 4th score (exactly the strided sample) is huge, so the sampled bracket misses the
    # true 50% quantile and the full-selection fallback runs
    n = 1 << 18
    scores = torch.rand(n, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    scores[:: n // masks_mod._SAMPLE] += 10.0
    k = n // 2
    run = _run(lambda: masks_mod._kth_smallest(scores, k))
    assert aten.kthvalue not in run["ops"] and not run["ops"] & _NONDETERMINISTIC_ON_CUDA
    assert run["result"].item() == torch.sort(scores).values[k - 1].item()


@pytest.mark.parametrize("n", [7, 5000, (1 << 18) + 3])
def test_kth_smallest_equals_sorted_value_with_ties_and_nan(n):
    g = torch.Generator().manual_seed(n)
    scores = torch.randint(0, 50, (n,), generator=g).float()
    for k in {1, 2, n // 3, n // 2, n - 1, n}:
        assert masks_mod._kth_smallest(scores, k).item() == torch.sort(scores).values[k - 1].item()
    scores[0] = float("nan")  # NaN ranks last, as in a sort
    assert masks_mod._kth_smallest(scores, n - 1).item() == torch.sort(scores).values[n - 2].item()
    assert masks_mod._kth_smallest(scores, n).isnan()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_masks_under_deterministic_algorithms_on_cuda():
    layers = [w.cuda() for w in _layers(True)]
    prev = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        for mask_type, sparsity in _CASES:
            ws = [w for w in layers if ":" not in mask_type or w.shape[1] % 4 == 0]
            got = compute_mask(ws, sparsity, mask_type, min_kept_per_channel=1)
            want = compute_mask([w.cpu() for w in ws], sparsity, mask_type, min_kept_per_channel=1)
            assert all(torch.equal(a.cpu(), b) for a, b in zip(got, want))
    finally:
        torch.use_deterministic_algorithms(prev)
