"""Magnitude masks: exact prune counts, block/N:M structure, ties, edge cases and errors."""

from __future__ import annotations

import pytest
import torch

from acdc_exp.errors import ConfigError
from acdc_exp.sparsity.masks import check_sparsity, compute_mask, mask_sparsity, parse_mask_type

torch.set_num_threads(1)


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _reference_keep(scores: torch.Tensor, n_prune: int) -> torch.Tensor:
    """Keep-mask from a full stable sort: prune the lowest (score, index) units."""
    flat = scores.reshape(-1)
    keep = torch.ones(flat.numel(), dtype=torch.bool)
    keep[torch.sort(flat, stable=True).indices[:n_prune]] = False
    return keep.view(scores.shape)


def _blocks(mask_or_w: torch.Tensor, width: int = 4) -> torch.Tensor:
    """[out, in, rest] -> [out, in // width, width, rest] (full blocks only)."""
    out, cin = mask_or_w.shape[:2]
    t = mask_or_w.reshape(out, cin, -1)
    full = cin // width
    return t[:, : full * width].reshape(out, full, width, t.shape[-1])


# --- unstructured -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape,sparsity", [((10, 7), 0.3), ((64, 32, 3, 3), 0.85), ((5,), 0.5), ((3, 5, 1, 1), 0.45), ((1000, 13), 0.999)]
)
def test_unstructured_prunes_exactly_round_count_of_smallest(shape, sparsity):
    w = _rand(*shape)
    mask = compute_mask(w, sparsity)
    n = w.numel()
    assert mask.dtype == torch.bool and mask.shape == w.shape
    assert int((~mask).sum()) == round(sparsity * n)
    # every kept weight is at least as large as every pruned one
    if 0 < int((~mask).sum()) < n:
        assert w.abs()[mask].min() >= w.abs()[~mask].max()
    assert torch.equal(mask, _reference_keep(w.abs(), round(sparsity * n)))


def test_global_threshold_over_three_tensors():
    a = _rand(20, 10, seed=1) * 0.1  # small weights: should absorb most of the pruning
    b = _rand(8, 4, 3, 3, seed=2)
    c = _rand(30, 7, seed=3) * 10.0
    masks = compute_mask([a, b, c], 0.6)
    assert isinstance(masks, list) and [m.shape for m in masks] == [a.shape, b.shape, c.shape]
    total = a.numel() + b.numel() + c.numel()
    pruned = sum(int((~m).sum()) for m in masks)
    assert pruned == round(0.6 * total)
    # one threshold: the smallest kept |w| anywhere beats the largest pruned |w| anywhere
    kept = torch.cat([w.abs()[m] for w, m in zip([a, b, c], masks)])
    gone = torch.cat([w.abs()[~m] for w, m in zip([a, b, c], masks)])
    assert kept.min() >= gone.max()
    # the layers end up with very different sparsities
    per = [mask_sparsity(m) for m in masks]
    assert per[0] == 1.0 and per[0] > per[1] > per[2]
    assert mask_sparsity(masks) == pytest.approx(pruned / total)


def test_global_single_tensor_list_matches_single_tensor():
    w = _rand(16, 8, 3, 3)
    assert torch.equal(compute_mask([w], 0.7)[0], compute_mask(w, 0.7))


def test_large_input_matches_full_sort_reference():
    # > 2**18 units takes the bracketed-selection path; it must equal a plain stable sort
    w = _rand(300, 256, 2, 2, seed=5)
    w[:, :64] = 0.25  # a large tie block right around the threshold
    for sparsity in (0.05, 0.3, 0.5, 0.85, 0.9999):
        mask = compute_mask(w, sparsity)
        assert torch.equal(mask, _reference_keep(w.abs(), round(sparsity * w.numel())))


def test_ties_are_deterministic_by_flat_index():
    w = torch.ones(6, 5)
    mask = compute_mask(w, 0.4)  # 12 of 30 equal weights pruned: the first 12 in flat order
    expected = torch.ones(30, dtype=torch.bool)
    expected[:12] = False
    assert torch.equal(mask.reshape(-1), expected)
    assert torch.equal(compute_mask(w.clone(), 0.4), mask)
    # sign does not matter, only |w|
    assert torch.equal(compute_mask(-w, 0.4), mask)


def test_sparsity_zero_and_one():
    w = _rand(4, 6, 3, 3)
    for mask_type in ("unstructured", "block4"):
        assert compute_mask(w, 0.0, mask_type).all()
        assert not compute_mask(w, 1.0, mask_type).any()
    masks = compute_mask([w, _rand(3, 3)], 1)
    assert not any(m.any() for m in masks)


def test_weight_with_grad_and_parameter_input():
    p = torch.nn.Parameter(_rand(8, 8))
    mask = compute_mask(p, 0.5)
    assert not mask.requires_grad and int((~mask).sum()) == 32
    with torch.no_grad():
        p.mul_(mask)
    assert int((p == 0).sum()) == 32 and p.requires_grad
    assert mask_sparsity(mask) == 0.5


# --- block4 -----------------------------------------------------------------------------------


def test_block4_conv_blocks_all_or_nothing_and_scored_by_mean():
    w = _rand(16, 8, 3, 3)
    mask = compute_mask(w, 0.75, "block4")
    blocks = _blocks(mask)  # [16, 2, 4, 9]
    assert (blocks.all(dim=2) | ~blocks.any(dim=2)).all(), "a block is partly pruned"
    n_blocks = 16 * 2 * 9
    pruned_blocks = int((~blocks[:, :, 0, :]).sum())
    assert pruned_blocks == round(0.75 * n_blocks)
    # block scores: mean |w| over the 4 input channels at fixed (out, kh, kw)
    scores = _blocks(w.abs()).mean(dim=2)
    keep = blocks[:, :, 0, :]
    assert scores[keep].min() >= scores[~keep].max()


def test_block4_groups_input_channels_not_spatial_positions():
    # make one (out=0, kh=1, kw=2) block over in-channels 4..7 the only large values
    w = torch.full((2, 8, 3, 3), 0.01)
    w[0, 4:8, 1, 2] = 5.0
    mask = compute_mask(w, 1 - 1 / 36, "block4")  # keep exactly 1 of 36 blocks
    assert int(mask.sum()) == 4
    assert mask[0, 4:8, 1, 2].all()


def test_block4_linear_rows():
    w = _rand(10, 12)
    mask = compute_mask(w, 0.5, "block4")
    blocks = mask.view(10, 3, 4)
    assert (blocks.all(-1) | ~blocks.any(-1)).all()
    assert int((~blocks[..., 0]).sum()) == 15
    scores = w.abs().view(10, 3, 4).mean(-1)
    assert torch.equal(blocks[..., 0], _reference_keep(scores, 15))


@pytest.mark.parametrize("cin", [6, 7, 5])
def test_block4_partial_trailing_block_scored_by_mean_of_real_values(cin):
    out, r = 3, cin % 4
    w = torch.full((out, cin), 1.0)
    # row 0: partial block has real values with mean 3.0 -> it must be the kept unit;
    # its members are unequal, so a zero-padded mean would score it lower than 3.0 * r / 4
    tail = torch.linspace(2.0, 4.0, r) if r > 1 else torch.tensor([3.0])
    w[0, 4:] = tail
    # row 1: full block has mean 2.0, partial block (mean 1.0) loses to it
    w[1, :4] = 2.0
    n_blocks = out * 2
    mask = compute_mask(w, 1 - 2 / n_blocks, "block4")  # keep 2 blocks of 6
    assert mask.shape == w.shape
    # kept: the partial block of row 0 (score 3.0) and the full block of row 1 (score 2.0)
    expected = torch.zeros(out, cin, dtype=torch.bool)
    expected[0, 4:] = True
    expected[1, :4] = True
    assert torch.equal(mask, expected)


def test_block4_partial_block_ranked_against_full_blocks_by_mean():
    # a partial block of 2 real values with mean 1.5 must beat a full block with mean 1.4
    # (zero padding would give it 0.75 and lose) and lose to one with mean 1.6
    w = torch.tensor([[1.4, 1.4, 1.4, 1.4, 1.0, 2.0], [1.6, 1.6, 1.6, 1.6, 0.1, 0.1]])
    mask = compute_mask(w, 0.5, "block4")  # 4 blocks, prune 2
    expected = torch.tensor([[False] * 4 + [True] * 2, [True] * 4 + [False] * 2])
    assert torch.equal(mask, expected)


def test_block4_conv_with_partial_block_keeps_shape_and_units():
    w = _rand(5, 7, 3, 3, seed=4)
    mask = compute_mask(w, 0.5, "block4")
    assert mask.shape == w.shape
    full, tail = mask[:, :4], mask[:, 4:]
    assert (full.all(1) | ~full.any(1)).all()
    assert (tail.all(1) | ~tail.any(1)).all()
    n_blocks = 5 * 2 * 9
    pruned = int((~full[:, 0]).sum() + (~tail[:, 0]).sum())
    assert pruned == round(0.5 * n_blocks)


def test_block4_global_over_conv_and_linear():
    conv = _rand(8, 8, 3, 3, seed=6)
    lin = _rand(4, 6, seed=7) * 3.0
    masks = compute_mask([conv, lin], 0.5, "block4")
    n_blocks = 8 * 2 * 9 + 4 * 2
    pruned = int((~_blocks(masks[0])[:, :, 0]).sum()) + int((~masks[1][:, [0, 4]]).sum())
    assert pruned == round(0.5 * n_blocks)


def test_block4_ties_deterministic():
    w = torch.ones(4, 8, 1, 1)
    mask = compute_mask(w, 0.5, "block4")
    # block scores are flat-ordered (out, block, kh*kw): the first 4 blocks = rows 0 and 1
    expected = torch.zeros(4, 8, 1, 1, dtype=torch.bool)
    expected[2:] = True
    assert torch.equal(mask, expected)


def test_block4_rejects_1d_weight():
    with pytest.raises(ConfigError, match=r"shape \(8,\)"):
        compute_mask(torch.ones(8), 0.5, "block4")


# --- N:M --------------------------------------------------------------------------------------


@pytest.mark.parametrize("n,m", [(2, 4), (1, 4), (3, 8)])
def test_nm_keeps_n_largest_per_group(n, m):
    w = _rand(6, 2 * m, 3, 3, seed=n + m)
    mask = compute_mask(w, 1 - n / m, f"{n}:{m}")
    assert mask.shape == w.shape
    groups_m = mask.reshape(6, 2, m, 9)
    groups_w = w.abs().reshape(6, 2, m, 9)
    assert (groups_m.sum(dim=2) == n).all()
    kept_min = torch.where(groups_m, groups_w, torch.inf).amin(dim=2)
    pruned_max = torch.where(~groups_m, groups_w, -torch.inf).amax(dim=2)
    assert (kept_min >= pruned_max).all()


def test_nm_linear_and_ties():
    w = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.1, 5.0, 0.2, 4.0]])
    mask = compute_mask(w, 0.5, "2:4")
    # ties: the lower input indices are pruned first
    assert mask.tolist() == [[False, False, True, True, False, True, False, True]]


def test_nm_errors():
    with pytest.raises(ConfigError, match=r"sparsity=0.9 does not match mask_type='2:4'; allowed: 0.5"):
        compute_mask(_rand(4, 8), 0.9, "2:4")
    with pytest.raises(ConfigError, match=r"\(4, 6, 3, 3\) has 6"):
        compute_mask(_rand(4, 6, 3, 3), 0.5, "2:4")
    with pytest.raises(ConfigError, match="1 <= N <= M"):
        parse_mask_type("5:4")
    assert check_sparsity(2 / 3, "1:3").kind == "nm"


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [1.3, -0.1, float("nan")])
def test_bad_sparsity(bad):
    with pytest.raises(ConfigError, match=r"out of range; allowed: 0 <= sparsity <= 1"):
        compute_mask(_rand(4, 4), bad)


def test_bad_sparsity_message_exact():
    with pytest.raises(ConfigError) as err:
        compute_mask(_rand(4, 4), 1.3)
    assert str(err.value) == "sparsity=1.3 is out of range; allowed: 0 <= sparsity <= 1"


@pytest.mark.parametrize("bad", ["block8", "structured", "2-4", ""])
def test_bad_mask_type(bad):
    with pytest.raises(ConfigError, match="allowed: unstructured, block4, N:M such as 2:4"):
        compute_mask(_rand(4, 4), 0.5, bad)


def test_empty_list():
    with pytest.raises(ConfigError, match="empty list"):
        compute_mask([], 0.5)


@pytest.mark.parametrize("mask_type", ["unstructured", "block4"])
def test_channel_floor_keeps_every_channel_alive_at_the_same_count(mask_type):
    torch.manual_seed(0)
    w = torch.randn(32, 16, 3, 3)
    w[:12] *= 1e-3  # small channels: plain magnitude pruning kills them whole
    plain = compute_mask(w, 0.95, mask_type)
    floored = compute_mask(w, 0.95, mask_type, min_kept_per_channel=1)
    dead = lambda m: int((~m.flatten(1).any(1)).sum())  # noqa: E731
    assert dead(plain) == 12 and dead(floored) == 0
    assert int(floored.sum()) == int(plain.sum())  # the pruning count is unchanged
    # the floor takes each small channel's largest weight; the rest stays magnitude order
    assert bool(floored[:12].flatten(1).sum(1).eq(4 if mask_type == "block4" else 1).all())
    assert torch.equal(compute_mask(w, 0.95, mask_type, min_kept_per_channel=1), floored)


def test_channel_floor_larger_than_the_budget_keeps_the_largest_floors():
    torch.manual_seed(0)
    w = torch.randn(32, 16, 1, 1)  # 512 weights; 98% keeps 10 < 32 channels
    m = compute_mask(w, 0.98, "unstructured", min_kept_per_channel=1)
    assert int(m.sum()) == 10 and int(m.flatten(1).any(1).sum()) == 10
    row_max = w.abs().flatten(1).max(1).values
    assert set(m.flatten(1).any(1).nonzero().flatten().tolist()) == set(row_max.topk(10).indices.tolist())
