"""The optimizer as the trainer builds and resumes it: a fused SGD (the CUDA default, so fp16's
GradScaler needs no host sync) computes what the unfused one does, also when the first step's
gradients overflow, and a resume keeps the optimizer fused whatever the checkpoint says."""

from __future__ import annotations

import torch
from omegaconf import OmegaConf
from torch import nn

from acdc_exp.training.setup import build_optimizer, load_optimizer_state


def _cfg(fused):
    return OmegaConf.create(
        {
            "_target_": "torch.optim.SGD",
            "lr": 0.1,
            "momentum": 0.9,
            "nesterov": True,
            "weight_decay": 1e-4,
            "decay_bn_and_bias": True,
            "fused": fused,
        }
    )


def _train(fused, inputs):
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    opt = build_optimizer(_cfg(fused), model)
    scaler = torch.amp.GradScaler("cpu", init_scale=4.0)
    for x in inputs:
        opt.zero_grad(set_to_none=True)
        scaler.scale(model(x).square().sum()).backward()
        scaler.step(opt)
        scaler.update()
    return model, opt


def test_fused_sgd_survives_an_overflowing_first_step():
    overflow = torch.full((2, 4), float("inf"))  # inf gradients: GradScaler skips the step
    inputs = [overflow, torch.randn(2, 4, generator=torch.Generator().manual_seed(1)), torch.ones(2, 4)]
    ref, _ = _train(None, inputs)
    fused, opt = _train(True, inputs)
    assert all(torch.isfinite(opt.state[p]["momentum_buffer"]).all() for p in fused.parameters())
    torch.testing.assert_close(fused.weight, ref.weight)
    torch.testing.assert_close(fused.bias, ref.bias)


def test_resume_keeps_the_optimizer_fused():
    _, plain = _train(None, [torch.ones(2, 4)])
    model, fused = _train(True, [torch.ones(2, 4)])
    load_optimizer_state(fused, plain.state_dict())  # a checkpoint written by an unfused optimizer
    assert all(g["fused"] is True for g in fused.param_groups)
    scaler = torch.amp.GradScaler("cpu")
    scaler.scale(model(torch.ones(2, 4)).sum()).backward()
    scaler.step(fused)  # a fused group flag of None here would fail GradScaler's fused path
    scaler.update()
