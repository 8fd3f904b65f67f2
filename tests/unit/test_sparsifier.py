"""The Sparsifier hooks against a real optimizer: masks hold, dense phases regrow, momentum resets."""

from __future__ import annotations

import torch
from torch import nn

from acdc_exp.plan import StepPlan
from acdc_exp.sparsity.sparsifier import Sparsifier


def step_plan(step: int, phase: str, update: bool, sparsity: float = 0.75) -> StepPlan:
    sparsity = sparsity if phase == "compressed" else 0.0
    return StepPlan.make(phase, sparsity, update_masks=update, step=step, epoch=float(step), weight_decay=1e-2)


def make(reset_momentum: str = "pruned"):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2)
    sp = Sparsifier(model, params=["0.weight", "3.weight"], reset_momentum=reset_momentum)
    sp.attach_optimizer(opt)
    return model, opt, sp


def sgd_step(model, opt, sp, p):
    sp.begin_step(p)
    x, y = torch.randn(16, 3, 8, 8), torch.randint(0, 4, (16,))
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    sp.mask_gradients()
    opt.step()
    sp.end_step()


def test_pruned_weights_stay_zero_through_sgd_with_momentum_and_weight_decay():
    model, opt, sp = make()
    sgd_step(model, opt, sp, step_plan(0, "dense", False))  # build momentum first
    sgd_step(model, opt, sp, step_plan(1, "compressed", True))
    masks = {n: m.clone() for n, m in sp.masks.items()}
    for s in range(2, 8):
        sgd_step(model, opt, sp, step_plan(s, "compressed", False))
        for n, w in dict(model.named_parameters()).items():
            if n in masks:
                assert (w[~masks[n]] == 0).all()
                assert torch.equal(sp.masks[n], masks[n])  # held fixed within the phase
    assert abs(sp.layer_sparsity()["0.weight"] - 0.75) < 0.01


def test_dense_phase_regrows_from_zero_with_pruned_momentum_reset():
    model, opt, sp = make()
    sgd_step(model, opt, sp, step_plan(0, "dense", False))
    sgd_step(model, opt, sp, step_plan(1, "compressed", True))
    sgd_step(model, opt, sp, step_plan(2, "compressed", False))
    mask = sp.masks["0.weight"].clone()
    w = dict(model.named_parameters())["0.weight"]
    sp.begin_step(step_plan(3, "dense", False))
    assert sp.masks is None
    buf = opt.state[w]["momentum_buffer"]
    assert (buf[~mask] == 0).all()  # momentum of pruned weights reset
    assert (w[~mask] == 0).all()  # they restart from exactly zero
    sgd_step(model, opt, sp, step_plan(3, "dense", False))
    assert (w[~mask] != 0).float().mean() > 0.9  # and regrow


def test_next_compressed_phase_reports_mask_change():
    model, opt, sp = make()
    first = sp.begin_step(step_plan(0, "compressed", True))
    assert first.changed_fraction is None and abs(first.global_sparsity - 0.75) < 0.01
    sp.begin_step(step_plan(1, "dense", False))
    for s in range(2, 6):
        sgd_step(model, opt, sp, step_plan(s, "dense", False))
    second = sp.begin_step(step_plan(6, "compressed", True))
    assert second.changed_fraction is not None and 0.0 <= second.changed_fraction <= 1.0
    assert set(second.layer_changed) == {"0.weight", "3.weight"}


def _dead_channel_run(dead_channels: str, resume_mid_dense: bool = False):
    """conv -> BN with output channels 0-2 pruned whole by a 70% mask, then 4 dense steps."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 4))
    with torch.no_grad():
        model[0].weight[:3].mul_(1e-3)  # the smallest magnitudes: pruned first
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2)
    sp = Sparsifier(model, params=["0.weight"], dead_channels=dead_channels)
    sp.attach_optimizer(opt)
    sgd_step(model, opt, sp, step_plan(0, "compressed", True, sparsity=0.7))
    mask = sp.masks["0.weight"].clone()
    assert not mask[:3].any() and mask[3:].flatten(1).any(1).all()  # exactly channels 0-2 dead
    for s in range(1, 5):
        if resume_mid_dense and s == 3:
            state = sp.state_dict()
            sp = Sparsifier(model, params=["0.weight"], dead_channels=dead_channels)
            sp.attach_optimizer(opt)
            sp.load_state_dict(state)
        sgd_step(model, opt, sp, step_plan(s, "dense", False))
    return model[0].weight.detach(), mask


def test_keep_pruned_holds_dead_channels_at_zero_in_dense_phases():
    w, mask = _dead_channel_run("keep_pruned")
    assert (w[:3] == 0).all()  # the dead channels stay dead
    assert (w[3:][~mask[3:]] != 0).float().mean() > 0.9  # the other pruned weights regrow
    w_resumed, _ = _dead_channel_run("keep_pruned", resume_mid_dense=True)
    assert torch.equal(w, w_resumed)  # the holds follow from the checkpointed masks


def test_regrow_regrows_dead_channels_with_a_jump():
    """BatchNorm scales the gradient of a channel it saw as constant by ~1/sqrt(eps): in 4 steps
    the regrown channels reach >10x the norm of the channels that were never dead."""
    w, _ = _dead_channel_run("regrow")
    norms = w.flatten(1).norm(dim=1)
    assert norms[:3].max() > 10 * norms[3:].max()


def test_masks_of_other_layers_are_refused_in_one_line():
    """trainer.resume_force=true past a changed sparsity.params: a clear error, not a KeyError."""
    import pytest

    from acdc_exp.errors import CheckpointError

    model, opt, sp = make()
    sgd_step(model, opt, sp, step_plan(0, "compressed", True))
    other = Sparsifier(model, params=["0.weight"])
    with pytest.raises(CheckpointError, match=r"other layers than sparsity.params selects here \(e\.g\. 3\.weight\)"):
        other.load_state_dict(sp.state_dict())
