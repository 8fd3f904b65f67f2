"""training/step.py::train_step is the one step: its hook order on a real model, sparsifier
and optimizer, and the trainer and both step benchmarks call it rather than a copy."""

from __future__ import annotations

import ast
from pathlib import Path

import torch
from conftest import REPO
from torch import nn

from acdc_exp.plan import QatStep, StepPlan
from acdc_exp.quantization import NoQuantization
from acdc_exp.sparsity.sparsifier import Sparsifier
from acdc_exp.training.precision import full_precision
from acdc_exp.training.step import train_step


class Recorded(Sparsifier):
    """The real sparsifier, noting each hook call in ``calls``."""

    calls: list

    def begin_step(self, p):
        self.calls.append("sparsifier.begin_step")
        return super().begin_step(p)

    def mask_gradients(self):
        self.calls.append("sparsifier.mask_gradients")
        super().mask_gradients()

    def end_step(self):
        self.calls.append("sparsifier.end_step")
        super().end_step()


class Parts:
    def __init__(self) -> None:
        torch.manual_seed(0)
        self.model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
        self.calls: list = []
        self.forward = lambda x: (self.calls.append("forward"), self.model(x))[1]
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.5, momentum=0.9, weight_decay=0.3)
        self.optimizer.register_step_pre_hook(lambda *a: self.calls.append("optimizer.step"))
        self.criterion = nn.CrossEntropyLoss()
        self.sparsifier = Recorded(self.model, params=["0.weight"])
        self.sparsifier.calls = self.calls
        self.sparsifier.attach_optimizer(self.optimizer)
        self.quantizer = NoQuantization()
        self.precision = full_precision(torch.device("cpu"))
        self.scaler = self.precision.grad_scaler()

    def start_qat(self, p):
        self.calls.append("start_qat")


def _plan(step: int, update: bool, qat: bool = False) -> StepPlan:
    qat_step = QatStep(active=qat, start=qat)
    return StepPlan.make("compressed", 0.75, update_masks=update, step=step, lr=0.05, weight_decay=1e-4, qat=qat_step)


def test_the_step_calls_the_hooks_in_their_order_and_keeps_the_mask():
    parts = Parts()
    x, y = torch.randn(8, 16), torch.randint(0, 4, (8,))
    updates = []
    loss, logits = train_step(parts, x, y, _plan(0, update=True), on_mask_update=updates.append)
    assert parts.calls == [
        "sparsifier.begin_step",
        "forward",
        "sparsifier.mask_gradients",
        "optimizer.step",
        "sparsifier.end_step",
    ]
    assert [u.step for u in updates] == [0] and updates[0].layer_sparsity["0.weight"] == 0.75
    assert not loss.requires_grad and logits.shape == (8, 4)
    assert {g["lr"] for g in parts.optimizer.param_groups} == {0.05}
    assert {g["weight_decay"] for g in parts.optimizer.param_groups} == {1e-4}
    weight = parts.model[0].weight
    assert int((weight == 0).sum()) == weight.numel() * 3 // 4  # pruned after the SGD step too
    parts.calls.clear()
    timed = []
    train_step(parts, x, y, _plan(1, update=False, qat=True), hook_timer=lambda name: _Note(timed, name))
    assert parts.calls[:2] == ["sparsifier.begin_step", "start_qat"]
    assert timed == ["begin_step", "mask_gradients", "end_step"]


class _Note:
    def __init__(self, out: list, name: str) -> None:
        out.append(name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_the_trainer_and_the_step_benchmarks_call_the_one_step():
    callers = ("acdc_exp/training/trainer.py", "bench/gpu_check_steps.py", "bench/bench_step_overhead.py")
    for rel in callers:
        tree = ast.parse(Path(REPO / rel).read_text())
        calls = {
            n.func.attr if isinstance(n.func, ast.Attribute) else getattr(n.func, "id", None)
            for n in ast.walk(tree)
            if isinstance(n, ast.Call)
        }
        assert "train_step" in calls, rel
        # no step of its own: backward and the loss scaler's step live in training/step.py
        assert not {"backward", "zero_grad"} & calls, rel
