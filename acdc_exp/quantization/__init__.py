"""Quantization-aware training on torch.ao.quantization, and export helpers."""

from __future__ import annotations

from torch import nn

from acdc_exp.quantization.base import NoQuantization


def build_quantizer(cfg, model: nn.Module):
    """A QAT controller for ``cfg`` (QuantizationConfig), or a no-op when disabled."""
    if not cfg.enabled:
        return NoQuantization()
    from acdc_exp.quantization.qat import QATController

    return QATController.from_config(cfg, model)


__all__ = ["build_quantizer", "NoQuantization"]
