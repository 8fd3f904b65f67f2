"""Quantization-aware training on torch.ao.quantization, and export helpers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from omegaconf import DictConfig
from torch import nn

from acdc_exp.quantization.base import NoQuantization

if TYPE_CHECKING:  # qat.py loads torch.ao.quantization, which only a QAT run needs
    from acdc_exp.quantization.qat import QATController


def build_quantizer(cfg: DictConfig, model: nn.Module) -> "NoQuantization | QATController":
    """A QAT controller for ``cfg`` (QuantizationConfig), or a no-op when disabled."""
    if not cfg.enabled:
        return NoQuantization()
    from acdc_exp.quantization.qat import QATController  # torch.ao.quantization only for QAT runs

    return QATController.from_config(cfg, model)


__all__ = ["build_quantizer", "NoQuantization"]
