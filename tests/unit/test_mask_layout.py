"""Masks follow their weight's memory format (channels_last stays NHWC), checkpoints stay NCHW.

A mask whose strides differ from its weight's takes _foreach_mul_ off its fast path; the masked
weights must not depend on the layout, and checkpoints must load into either layout.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import pytest
import torch
from test_sparsifier import step_plan  # the same StepPlan maker
from torch import nn

from acdc_exp.errors import CheckpointError
from acdc_exp.sparsity.sparsifier import Sparsifier, like_param

CL = torch.channels_last
PARAMS = ["0.weight", "2.weight", "3.weight", "6.weight"]


def _model(channels_last: bool) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3),
        nn.Conv2d(16, 8, 1),  # 1x1: both layouts at once, strides must still match
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 4),
    )
    return model.to(memory_format=CL) if channels_last else model


def _make(channels_last: bool, dead_channels: str = "regrow") -> Tuple[nn.Module, torch.optim.Optimizer, Sparsifier]:
    model = _model(channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
    sp = Sparsifier(model, params=PARAMS, reset_momentum="pruned", dead_channels=dead_channels)
    sp.attach_optimizer(opt)
    return model, opt, sp


def _synthetic_step(model: nn.Module, opt: torch.optim.Optimizer, sp: Sparsifier, plan, seed: int) -> None:
    """One hooked SGD step with fixed gradients: no conv, so both layouts compute the same
    elementwise arithmetic and must agree bit for bit."""
    sp.begin_step(plan)
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        grad = torch.randn(p.shape, generator=g)
        p.grad = torch.empty_like(p).copy_(grad)  # in the parameter's layout, as autograd does
    sp.mask_gradients()
    opt.step()
    sp.end_step()


def _assert_layout(sp: Sparsifier, model: nn.Module) -> None:
    named = dict(model.named_parameters())
    stores: List[Dict[str, torch.Tensor]] = [sp._keep] + [d for d in (sp.masks, sp.last_masks) if d is not None]
    for store in stores:
        for n, m in store.items():
            assert m.stride() == named[n].stride(), n
            if m.dim() == 4 and named[n].is_contiguous(memory_format=CL):
                assert m.is_contiguous(memory_format=CL), n


def _plans() -> list:
    phases = ["dense", "compressed", "compressed", "compressed", "dense", "dense", "compressed", "compressed"]
    return [
        step_plan(s, ph, ph == "compressed" and (s == 0 or phases[s - 1] != "compressed"), 0.8) for s, ph in enumerate(phases)
    ]


@pytest.mark.parametrize("dead_channels", ["regrow", "keep_pruned"])
def test_channels_last_masks_are_nhwc_and_weights_match_contiguous_run(dead_channels):
    runs = {cl: _make(cl, dead_channels) for cl in (False, True)}
    for i, plan in enumerate(_plans()):
        for cl, (model, opt, sp) in runs.items():
            _synthetic_step(model, opt, sp, plan, seed=i)
            _assert_layout(sp, model)
    (m0, _, sp0), (m1, _, sp1) = runs[False], runs[True]
    assert any(m.dim() == 4 for m in sp1.masks.values())
    for n in PARAMS:
        assert torch.equal(sp0.masks[n], sp1.masks[n])
    for (n, a), b in zip(m0.named_parameters(), m1.parameters()):
        assert torch.equal(a, b), n
        assert torch.equal(a.ne(0), b.ne(0))


@pytest.mark.parametrize("saved_cl,loaded_cl", [(True, False), (False, True), (True, True)])
def test_checkpoint_masks_are_nchw_and_load_into_either_layout(saved_cl, loaded_cl):
    model, opt, sp = _make(saved_cl)
    for i, plan in enumerate(_plans()[:6]):  # ends in a dense phase: masks None, last_masks set
        _synthetic_step(model, opt, sp, plan, seed=i)
    compressed = sp.state_dict()
    assert compressed["masks"] is None and compressed["last_masks"] is not None
    _synthetic_step(model, opt, sp, step_plan(6, "compressed", True, 0.8), seed=6)
    state = sp.state_dict()
    for d in (state["masks"], state["last_masks"]):
        assert all(m.is_contiguous() for m in d.values())  # the checkpoint format is unchanged
    target, _, sp2 = _make(loaded_cl)
    sp2.load_state_dict(state)
    _assert_layout(sp2, target)
    for n in PARAMS:
        assert torch.equal(sp2.masks[n], sp.masks[n])
    sp2.apply_masks()
    for n in PARAMS:
        assert bool((target.get_parameter(n)[~sp.masks[n]] == 0).all())
    sp3 = _make(loaded_cl)[2]
    sp3.load_state_dict(compressed)  # dense-phase checkpoint: holds rebuilt in the new layout
    _assert_layout(sp3, _model(loaded_cl))


def test_rebind_after_a_layout_change_relays_the_masks():
    model, opt, sp = _make(False)
    _synthetic_step(model, opt, sp, step_plan(0, "compressed", True, 0.8), seed=0)
    before = {n: m.clone() for n, m in sp.masks.items()}
    model.to(memory_format=CL)  # same Parameter objects, NHWC data
    sp.rebind(model)
    _assert_layout(sp, model)
    assert all(torch.equal(sp.masks[n], before[n]) for n in PARAMS)
    assert sp.masks["0.weight"].is_contiguous(memory_format=CL) and not sp.masks["0.weight"].is_contiguous()


def test_like_param_keeps_values_and_rejects_a_wrong_shape():
    p = torch.randn(4, 3, 2, 2).to(memory_format=CL)
    m = torch.rand(4, 3, 2, 2) > 0.5
    out = like_param(m, p, torch.float32)
    assert out.stride() == p.stride() and out.dtype == torch.float32 and not out.requires_grad
    assert torch.equal(out.bool(), m)
    assert like_param(out, p) is out  # already right: no copy
    with pytest.raises(CheckpointError, match="mask of conv.weight has shape"):
        like_param(torch.ones(4, 3, 2, 1, dtype=torch.bool), p, name="conv.weight")
