"""sparsity.reset_momentum: ``all`` against SparseML 1.8's ACDCPruningModifier step by step,
``pruned`` and ``none`` against their definitions, and bad values refused in one line."""

from __future__ import annotations

import copy
from typing import Dict, List

import pytest
import torch
from torch import nn

from acdc_exp.errors import ConfigError
from acdc_exp.plan import StepPlan
from acdc_exp.sparsity.masks import compute_mask
from acdc_exp.sparsity.sparsifier import Sparsifier

PRUNED = ["0.weight", "3.weight"]
# (phase, recompute masks) per step: dense warm-up, compressed, dense, compressed, dense
SCHEDULE = (
    [("dense", False)] * 2
    + [("compressed", True)]
    + [("compressed", False)] * 2
    + [("dense", False)] * 3
    + [("compressed", True)]
    + [("compressed", False)]
    + [("dense", False)] * 2
)


def plan(step: int, phase: str, update: bool) -> StepPlan:
    sparsity = 0.7 if phase == "compressed" else 0.0
    return StepPlan.make(phase, sparsity, update_masks=update, step=step, epoch=float(step), lr=0.05, weight_decay=1e-2)


def sgd(model: nn.Module, momentum: float = 0.9, nesterov: bool = True) -> torch.optim.SGD:
    return torch.optim.SGD(model.parameters(), lr=0.05, momentum=momentum, nesterov=nesterov, weight_decay=1e-2)


def model_and_optimizer():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.Flatten(), nn.Linear(8 * 4 * 4, 4)
    )
    return model, sgd(model)


def batches(n: int):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(8, 3, 8, 8, generator=g), torch.randint(0, 4, (8,), generator=g)) for _ in range(n)]


class SparseMLReference:
    """What SparseML 1.8 does per optimizer step with ACDCPruningModifier(momentum_buffer_reset=True),
    written from its source for this test: masks multiply the gradients before the step and the
    weights after it; in ``optimizer_post_step``, when the phase is decompressed and a compressed
    phase has run since the last reset, every ``momentum_buffer`` in
    ``optimizer.state_dict()["state"]`` is multiplied by 0. A compressed phase marks the buffers
    non-empty when its sparsity is looked up, at the step's update."""

    def __init__(self, model: nn.Module, opt: torch.optim.Optimizer) -> None:
        self.params = dict(model.named_parameters())
        self.opt = opt
        self.masks: Dict[str, torch.Tensor] = {}
        self.decompression = True
        self.buffer_empty = True

    def update(self, phase: str, recompute: bool) -> None:
        self.decompression = phase == "dense"
        if self.decompression:
            self.masks = {}
        else:
            self.buffer_empty = False
            if recompute:
                self.masks = {n: compute_mask(self.params[n].detach(), 0.7, "unstructured").float() for n in PRUNED}
                for n, m in self.masks.items():
                    self.params[n].data.mul_(m)

    def pre_step(self) -> None:
        for n, m in self.masks.items():
            self.params[n].grad.mul_(m)

    def post_step(self) -> None:
        for n, m in self.masks.items():
            self.params[n].data.mul_(m)
        if self.decompression and not self.buffer_empty:
            for state in self.opt.state_dict()["state"].values():
                if "momentum_buffer" in state:
                    state["momentum_buffer"].mul_(0.0)
            self.buffer_empty = True


def lockstep(step: int, phase: str, update: bool, x: torch.Tensor, y: torch.Tensor, ours: tuple, theirs: tuple) -> None:
    """One optimizer step of (model, optimizer, Sparsifier) and (model, optimizer, SparseMLReference)."""
    model, opt, sp = ours
    ref_model, ref_opt, ref = theirs
    sp.begin_step(plan(step, phase, update))
    ref.update(phase, update)
    for m, o in ((model, opt), (ref_model, ref_opt)):
        o.zero_grad()
        nn.functional.cross_entropy(m(x), y).backward()
    sp.mask_gradients()
    ref.pre_step()
    opt.step()
    ref_opt.step()
    sp.end_step()
    ref.post_step()
    for (name, a), b in zip(model.named_parameters(), ref_model.parameters()):
        assert torch.equal(a, b), f"step {step} ({phase}): {name} differs from SparseML"


def run_steps(mode: str, n: int):
    """The first ``n`` steps of SCHEDULE with reset_momentum=mode: (model, optimizer, sparsifier)."""
    model, opt = model_and_optimizer()
    sp = Sparsifier(model, params=PRUNED, reset_momentum=mode)
    sp.attach_optimizer(opt)
    data = batches(n)
    for step, (phase, update) in enumerate(SCHEDULE[:n]):
        sp.begin_step(plan(step, phase, update))
        opt.zero_grad()
        nn.functional.cross_entropy(model(data[step][0]), data[step][1]).backward()
        sp.mask_gradients()
        opt.step()
        sp.end_step()
    return model, opt, sp


def buffers(opt: torch.optim.Optimizer) -> List[torch.Tensor]:
    return [opt.state[p]["momentum_buffer"].clone() for g in opt.param_groups for p in g["params"]]


def test_reset_all_matches_sparseml_at_every_step():
    model, opt = model_and_optimizer()
    ref_model = copy.deepcopy(model)
    ref_opt = sgd(ref_model)
    sp = Sparsifier(model, params=PRUNED, reset_momentum="all")
    sp.attach_optimizer(opt)
    ref = SparseMLReference(ref_model, ref_opt)
    data = batches(len(SCHEDULE))
    resets_seen = 0
    for step, ((phase, update), (x, y)) in enumerate(zip(SCHEDULE, data)):
        lockstep(step, phase, update, x, y, (model, opt, sp), (ref_model, ref_opt, ref))
        ours, theirs = buffers(opt), buffers(ref_opt)
        assert all(torch.equal(a, b) for a, b in zip(ours, theirs)), f"step {step}: momentum differs"
        first_dense = phase == "dense" and step > 0 and SCHEDULE[step - 1][0] == "compressed"
        if first_dense:  # every parameter's buffer, BN and classifier too, is zero after the step
            assert all(bool((b == 0).all()) for b in ours)
            resets_seen += 1
        elif step > 0:
            assert any(bool((b != 0).any()) for b in ours)
    assert resets_seen == 2


def test_reset_all_comes_after_the_first_dense_step_not_before():
    """SparseML's first dense step still uses the compressed phase's momentum."""
    results = {}
    for mode in ("all", "none"):
        model, opt, _ = run_steps(mode, 6)
        results[mode] = (copy.deepcopy(model.state_dict()), buffers(opt))
    # step 5 is the first dense step: identical weights after it, different momentum
    assert all(torch.equal(results["all"][0][k], results["none"][0][k]) for k in results["all"][0])
    assert all(bool((b == 0).all()) for b in results["all"][1])
    assert all(bool((b != 0).any()) for b in results["none"][1])


@pytest.mark.parametrize("mode", ["pruned", "none"])
def test_pruned_and_none_modes(mode: str):
    model, opt, sp = run_steps(mode, 5)
    masks = {n: m.clone() for n, m in sp.masks.items()}
    before = buffers(opt)
    sp.begin_step(plan(5, "dense", False))  # the dense phase starts
    after = buffers(opt)
    named = [n for g in opt.param_groups for n, p in model.named_parameters() if any(p is q for q in g["params"])]
    for name, b0, b1 in zip(named, before, after):
        if mode == "pruned" and name in masks:
            assert bool((b1[~masks[name]] == 0).all()) and bool((b0[~masks[name]] != 0).any())
            assert torch.equal(b1[masks[name]], b0[masks[name]])  # kept entries untouched
        else:
            assert torch.equal(b0, b1)
    sp.end_step()
    assert all(torch.equal(a, b) for a, b in zip(after, buffers(opt)))  # nothing after the step


@pytest.mark.parametrize("key,value", [("reset_momentum", True), ("reset_momentum", "some"), ("dead_channels", "drop")])
def test_bad_choice_is_one_line(key: str, value):
    model, _ = model_and_optimizer()
    with pytest.raises(ConfigError) as err:
        Sparsifier(model, params=PRUNED, **{key: value})
    msg = str(err.value)
    assert f"sparsity.{key}={value!r}" in msg and "allowed:" in msg and "\n" not in msg


def test_one_pass_after_stale_momentum_settles_keeps_sparseml_weights():
    """A long compressed phase: once the pruned entries' stale momentum is subnormal the hooks
    skip the weight pass; weights stay bit-identical to SparseML's at every step, and the
    momentum differs only in entries SparseML holds below float32's normal range."""
    steps = [("dense", False)] * 2 + [("compressed", True)] + [("compressed", False)] * 200 + [("dense", False)] * 3
    model, _ = model_and_optimizer()
    ref_model = copy.deepcopy(model)
    opt = sgd(model, momentum=0.5, nesterov=False)
    ref_opt = sgd(ref_model, momentum=0.5, nesterov=False)
    sp = Sparsifier(model, params=PRUNED, reset_momentum="all")
    sp.attach_optimizer(opt)
    ref = SparseMLReference(ref_model, ref_opt)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 3, 8, 8, generator=g), torch.randint(0, 4, (8,), generator=g)
    settled_at = None
    tiny = torch.finfo(torch.float32).tiny
    for step, (phase, update) in enumerate(steps):
        # a slowly changing batch keeps the gradients alive
        lockstep(step, phase, update, x + 0.01 * step, y, (model, opt, sp), (ref_model, ref_opt, ref))
        if settled_at is None and sp.stale_momentum.settled:
            settled_at = step
        for a, b in zip(buffers(opt), buffers(ref_opt)):
            differ = a != b
            assert bool((b[differ].abs() < tiny).all()), f"step {step}: momentum differs above the subnormal range"
    assert settled_at is not None and 3 < settled_at < 203  # the one-pass mode did engage


def test_trainer_run_settles_and_resumes_bit_identically(tmp_path):
    """Through the trainer: a compressed phase long enough for the stale momentum to settle
    (momentum 0.1), a stop after it settled, and a resume that lands on the same weights."""
    from conftest import assert_same_final_weights, load_state, train

    run = [
        "trainer.epochs=4",
        "lr_schedule.warmup_epochs=0.5",
        "optimizer.momentum=0.1",
        "sparsity.sparsity=0.8",
        "sparsity.phases=[{start_epoch: 0, end_epoch: 1, phase: dense}, {start_epoch: 1, end_epoch: 4, phase: compressed}]",
    ]
    full, part = tmp_path / "full", tmp_path / "part"
    train(run, full)
    final = load_state(full / "checkpoints" / "final.pt")
    assert final["sparsifier"]["stale"]["settled"]  # the one-pass hooks were in use at the end
    spe = final["step"] // 4
    stopped = train(run + [f"trainer.max_steps={3 * spe + spe // 2}"], part)
    assert stopped["interrupted"] and load_state(part / "checkpoints" / "last.pt")["sparsifier"]["stale"]["settled"]
    train(run + ["trainer.resume=auto"], part)
    assert_same_final_weights(full, part)
    for name, mask in final["sparsifier"]["masks"].items():
        assert not bool(final["model"][name][~mask].any())  # exact zeros with one pass
