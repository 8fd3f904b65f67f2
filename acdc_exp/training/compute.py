"""Compute accounting: a run's inference and training FLOPs, counted as the AC/DC and RigL
papers count them.

Only convolutions and fully connected layers are counted (their multiply-adds dominate; a FLOP
here is a multiply or an add, so one multiply-add is 2 FLOPs). A pruned layer costs its
non-zero weights' share of its dense count. Training counts forward plus backward per image,
backward as twice the forward at the same density (gradients of activations and of the kept
weights), each step at the density its phase holds: dense phases dense, compressed phases and
GMP's ramp at the sparsity in force (``StepPlan.masks.sparsity``). A RigL update step reads the
dense gradient of every weight, so its weight-gradient half of the backward is counted dense
(``StepPlan.masks.dense_gradient``): 2 sparse forwards and 1 dense, the RigL paper's count.
"""

from __future__ import annotations

import copy
from typing import Callable, Dict, Mapping, Tuple

import torch
from torch import nn

FLOPS_PER_MAC = 2
BACKWARD_PER_FORWARD = 2  # backward = 2 x forward (activation and weight gradients)


def layer_macs(model: nn.Module, res: int, in_channels: int = 3) -> Dict[str, int]:
    """Multiply-adds of one image's forward pass at ``res`` x ``res``, per conv / linear weight
    (keyed by the weight's parameter name). Runs a copy of ``model``, so neither BatchNorm
    statistics nor QAT observers of the run's model move."""
    probe = copy.deepcopy(model).eval()
    macs: Dict[str, int] = {}
    hooks = []

    def count(name: str) -> Callable:
        def hook(module: nn.Module, inputs, output: torch.Tensor) -> None:
            if isinstance(module, nn.Conv2d):
                kh, kw = module.kernel_size
                per_output = (module.in_channels // module.groups) * kh * kw
                macs[name] = int(output[0].numel()) * per_output
            else:
                macs[name] = int(module.in_features) * int(module.out_features)

        return hook

    for name, module in probe.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            hooks.append(module.register_forward_hook(count(f"{name}.weight" if name else "weight")))
    device = next(probe.parameters()).device
    try:
        with torch.no_grad():
            probe(torch.zeros(1, in_channels, res, res, device=device))
    finally:
        for h in hooks:
            h.remove()
    return macs


def forward_flops(macs: Mapping[str, int], density: Mapping[str, float]) -> float:
    """One image's forward FLOPs with each pruned layer at ``density`` (others dense)."""
    return float(FLOPS_PER_MAC * sum(m * density.get(name, 1.0) for name, m in macs.items()))


def inference_flops(macs: Mapping[str, int], layer_sparsity: Mapping[str, float]) -> Dict[str, float]:
    """The final model's forward FLOPs per image, its dense twin's, and their ratio."""
    dense = forward_flops(macs, {})
    sparse = forward_flops(macs, {n: 1.0 - s for n, s in layer_sparsity.items()})
    return {"inference_flops": sparse, "inference_flops_dense": dense, "inference_flops_ratio": sparse / dense}


def step_densities(layer_sparsity: Mapping[str, float], target: float, in_force: float) -> Dict[str, float]:
    """Each pruned layer's density at a step with sparsity ``in_force``: the final masks'
    per-layer shares scaled to it (layer-wise masks: every layer at ``1 - in_force``)."""
    if target <= 0.0 or in_force <= 0.0:
        return {}
    return {n: 1.0 - min(1.0, s * in_force / target) for n, s in layer_sparsity.items()}


def training_flops(
    plan,
    macs_at: Callable[[int], Mapping[str, int]],
    resolution_of: Callable[[float], int],
    layer_sparsity: Mapping[str, float],
    target: float,
    global_batch: int,
    steps: int,
) -> Dict[str, float]:
    """Forward + backward FLOPs of ``steps`` steps of ``plan`` (a Plan: ``at(step)``), each at
    its phase's density and its epoch's resolution, and the dense run's count for comparison."""
    per_step = 1 + BACKWARD_PER_FORWARD
    total = dense = 0.0
    cache: Dict[Tuple[float, int], float] = {}
    for step in range(steps):
        at = plan.at(step)
        res = resolution_of(at.epoch)
        key = (at.masks.sparsity, res)
        if key not in cache:
            cache[key] = forward_flops(macs_at(res), step_densities(layer_sparsity, target, at.masks.sparsity))
        if (0.0, res) not in cache:
            cache[(0.0, res)] = forward_flops(macs_at(res), {})
        if at.masks.dense_gradient:  # forward and activation gradients sparse, weight gradients dense
            total += (per_step - 1) * cache[key] + cache[(0.0, res)]
        else:
            total += per_step * cache[key]
        dense += per_step * cache[(0.0, res)]
    return {
        "training_flops": total * global_batch,
        "training_flops_dense": dense * global_batch,
        "training_flops_ratio": total / dense if dense else 1.0,
    }


def run_compute(
    model: nn.Module,
    plan,
    resolution_of: Callable[[float], int],
    val_res: int,
    layer_sparsity: Mapping[str, float],
    target: float,
    global_batch: int,
    steps: int,
) -> Dict[str, float]:
    """A finished run's compute figures for its summary: inference FLOPs of the final model at
    the evaluation resolution, training FLOPs of the ``steps`` it took."""
    by_res: Dict[int, Dict[str, int]] = {}

    def macs_at(res: int) -> Dict[str, int]:
        if res not in by_res:
            by_res[res] = layer_macs(model, res)
        return by_res[res]

    out = inference_flops(macs_at(val_res), layer_sparsity)
    out.update(training_flops(plan, macs_at, resolution_of, layer_sparsity, target, global_batch, steps))
    return out
