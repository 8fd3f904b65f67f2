"""A float copy of a QAT-prepared model: the same weights without fake quantization."""

from __future__ import annotations

import copy

import torch
import torch.ao.quantization as tq
from torch import nn


def is_prepared(model: nn.Module) -> bool:
    return any(isinstance(m, tq.FakeQuantize) for m in model.modules())


class _FloatConvReLU2d(nn.Conv2d):
    """Conv2d followed by ReLU that keeps the weight at ``<layer>.weight`` (torch's fused
    float ConvReLU2d is a Sequential and would rename it ``<layer>.0.weight``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return torch.relu(super().forward(x))


def _plain_float(module: nn.Module) -> nn.Module:
    flt = module.to_float().eval()
    if isinstance(flt, nn.Sequential):  # (conv, relu)
        conv = flt[0]
        conv.__class__ = _FloatConvReLU2d
        return conv
    return flt


def float_view(model: nn.Module) -> nn.Module:
    """A float copy of ``model``: QAT modules become plain (BN-folded) float modules and every
    fake quantizer an Identity. An unprepared model is just copied."""
    view = copy.deepcopy(model).cpu().eval()
    if not is_prepared(view):
        return view
    for parent in list(view.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, tq.FakeQuantize) or isinstance(child, tq.ObserverBase):
                setattr(parent, name, nn.Identity())
            elif callable(getattr(child, "to_float", None)) and hasattr(child, "weight_fake_quant"):
                setattr(parent, name, _plain_float(child))
    return view
