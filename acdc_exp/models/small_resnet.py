"""A CIFAR-style ResNet (depth 6n+2) for 32x32 inputs, laid out like torchvision's ResNet.

Module names follow torchvision (``conv1``/``bn1``/``relu`` stem, ``layerN.J.convK``,
``downsample.0``, ``fc``) so parameter selection, SparseML aliases and the QAT submodule
names (``input`` = stem, ``sections`` = layers) work the same on the demo and on ResNet-50.
It is quantization-ready for eager-mode QAT: a QuantStub/DeQuantStub pair, FloatFunctional
residual adds, and a float classifier after the DeQuantStub.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

import torch
from omegaconf import MISSING
from torch import nn
from torch.ao.nn.quantized import FloatFunctional
from torch.ao.quantization import DeQuantStub, QuantStub

from acdc_exp.errors import ConfigError
from acdc_exp.models.residual import zero_init_last_bn
from acdc_exp.registries import MODELS, ModelConfig


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU(inplace=False)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU(inplace=False)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
        self.skip_add = FloatFunctional()  # quantizable residual add

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(self.skip_add.add(out, identity))

    def fuse_groups(self) -> List[List[str]]:
        groups = [["conv1", "bn1", "relu1"], ["conv2", "bn2"]]
        if self.downsample is not None:
            groups.append(["downsample.0", "downsample.1"])
        return groups


class SmallResNet(nn.Module):
    def __init__(self, num_classes: int = 10, depth: int = 8, width: int = 16, in_channels: int = 3) -> None:
        super().__init__()
        if (depth - 2) % 6 != 0 or depth < 8:
            raise ValueError(f"model.depth={depth} is not of the form 6n+2 with n >= 1 (8, 14, 20, ...)")
        n = (depth - 2) // 6
        self.quant = QuantStub()
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=False)
        planes, layers = width, []
        in_planes = width
        for stage in range(3):
            stride = 1 if stage == 0 else 2
            blocks = []
            for i in range(n):
                blocks.append(BasicBlock(in_planes, planes, stride if i == 0 else 1))
                in_planes = planes
            layers.append(nn.Sequential(*blocks))
            planes *= 2
        self.layer1, self.layer2, self.layer3 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dequant = DeQuantStub()
        self.fc = nn.Linear(in_planes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.quant(x)
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = self.avgpool(x)
        # dequantize before the classifier: the recipe keeps ``classifier`` in float
        x = self.dequant(x)
        return self.fc(torch.flatten(x, 1))


@dataclass
class SmallResNetConfig(ModelConfig):
    width: int = MISSING  # base width
    depth: int = MISSING  # 6n+2
    # each residual branch starts as identity (Goyal et al.): its last BN's scale is zero
    zero_init_residual: bool = MISSING


@MODELS.register(schema=SmallResNetConfig)
def small_resnet(num_classes: int, width: int = 16, depth: int = 8, zero_init_residual: bool = False) -> SmallResNet:
    if num_classes <= 0:
        raise ConfigError(f"model.num_classes={num_classes} must be > 0")
    try:
        model = SmallResNet(num_classes=num_classes, depth=depth, width=width)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if zero_init_residual:
        zero_init_last_bn(model)
    return model
