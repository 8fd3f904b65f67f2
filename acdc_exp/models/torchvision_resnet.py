"""torchvision's ResNets in their quantization-ready form (identical parameters and weights)."""

from __future__ import annotations

import types
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import MISSING
from torch import nn

from acdc_exp.errors import ConfigError
from acdc_exp.models.residual import zero_init_last_bn
from acdc_exp.registries import MODELS, ModelConfig

# torchvision ships no quantizable resnet34 builder; its class covers every depth
DEPTHS = {"resnet18": ("basic", [2, 2, 2, 2]), "resnet34": ("basic", [3, 4, 6, 3]), "resnet50": ("bottleneck", [3, 4, 6, 3])}


@dataclass
class TorchvisionResNetConfig(ModelConfig):
    name: str = MISSING  # resnet18 | resnet34 | resnet50
    # each residual branch starts as identity (Goyal et al.): its last BN's scale is zero
    zero_init_residual: bool = MISSING


def _float_classifier_forward(self, x: torch.Tensor) -> torch.Tensor:
    # as torchvision's quantizable forward, but dequantized before the classifier: the
    # recipe quantizes ``input`` and ``sections`` and keeps ``classifier`` in float
    x = self.quant(x)
    x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
    x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
    x = self.dequant(self.avgpool(x))
    return self.fc(torch.flatten(x, 1))


def _arch(cfg: Any) -> str:
    return str(cfg["name"])


# SparseML's model cards start these from dense ImageNet weights: a run from random weights says
# so; messages call the model by its architecture (resnet50), not its builder
@MODELS.register(schema=TorchvisionResNetConfig, starts_from_pretrained=True, label=_arch)
def quantizable_resnet(name: str, num_classes: int, zero_init_residual: bool = False) -> nn.Module:
    # the quantizable classes have the plain ones' parameters (so pretrained weights load) plus
    # the stubs and FloatFunctional adds eager QAT needs
    from torchvision.models.quantization.resnet import QuantizableBasicBlock, QuantizableBottleneck, QuantizableResNet

    if name not in DEPTHS:
        raise ConfigError(f"model.name={name!r} is not a torchvision ResNet here; allowed: {', '.join(DEPTHS)}")
    if num_classes <= 0:
        raise ConfigError(f"model.num_classes={num_classes} must be > 0")
    kind, layers = DEPTHS[name]
    block = QuantizableBottleneck if kind == "bottleneck" else QuantizableBasicBlock
    model = QuantizableResNet(block, layers, num_classes=num_classes)
    model.forward = types.MethodType(_float_classifier_forward, model)
    if zero_init_residual:
        zero_init_last_bn(model)
    return model
