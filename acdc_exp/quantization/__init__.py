"""Quantization-aware training on torch.ao.quantization: the variants (none, qat), the int8 model
and its agreement with the QAT model; ONNX export of the members is ``acdc_exp.deploy``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Union

from omegaconf import DictConfig
from torch import nn

from acdc_exp.quantization.base import NoQuantization
from acdc_exp.registries import QUANTIZATION

if TYPE_CHECKING:  # qat.py loads torch.ao.quantization, which only a QAT run needs
    from acdc_exp.quantization.qat import QATController


def build_quantizer(cfg: DictConfig, model: nn.Module) -> Union[NoQuantization, "QATController"]:
    """The hooks of the quantization variant ``cfg`` chooses, checked against ``model``."""
    return QUANTIZATION.build(cfg).controller(model)


__all__ = ["build_quantizer", "NoQuantization"]
