"""Build models by name: torchvision ResNets (quantization-ready variants) and the small ResNet."""

from __future__ import annotations

import os
import types
from typing import Optional

import torch
from torch import nn

from acdc_exp.errors import CheckpointError, ConfigError
from acdc_exp.models.small_resnet import SmallResNet

TORCHVISION_RESNETS = ("resnet18", "resnet34", "resnet50")
MODEL_NAMES = ("resnet_small",) + TORCHVISION_RESNETS


def _float_classifier_forward(self, x: torch.Tensor) -> torch.Tensor:
    # as torchvision's quantizable forward, but dequantized before the classifier: the
    # recipe quantizes ``input`` and ``sections`` and keeps ``classifier`` in float
    x = self.quant(x)
    x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
    x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
    x = self.dequant(self.avgpool(x))
    return self.fc(torch.flatten(x, 1))


def _torchvision_resnet(name: str, num_classes: int) -> nn.Module:
    # torchvision's quantizable ResNets have the same parameters as the plain ones (so
    # pretrained weights load) plus the stubs and FloatFunctional adds eager QAT needs.
    from torchvision.models.quantization.resnet import QuantizableBasicBlock, QuantizableBottleneck, QuantizableResNet

    # torchvision ships no quantizable resnet34 builder; the class covers every depth
    block, layers = {
        "resnet18": (QuantizableBasicBlock, [2, 2, 2, 2]),
        "resnet34": (QuantizableBasicBlock, [3, 4, 6, 3]),
        "resnet50": (QuantizableBottleneck, [3, 4, 6, 3]),
    }[name]
    model = QuantizableResNet(block, layers, num_classes=num_classes)
    model.forward = types.MethodType(_float_classifier_forward, model)
    return model


def _state_dict_from_file(path: str) -> dict:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # corrupt / not a torch file
        raise CheckpointError(f"model.weights={path!r} could not be read as a torch file: {exc}") from None
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]  # an acdc-exp checkpoint
    if isinstance(obj, dict) and "state_dict" in obj:
        obj = obj["state_dict"]
    return obj


def _torchvision_weights(name: str, weights: str) -> dict:
    """A torchvision weights enum entry, only if it is already in the local torch hub cache."""
    from torchvision.models import get_model_weights  # torchvision's model zoo takes seconds to import

    enum = get_model_weights(name)
    try:
        entry = enum[weights]
    except KeyError:
        allowed = ", ".join(e.name for e in enum)
        raise ConfigError(f"model.weights={weights!r} is not a {name} weights name; allowed: {allowed} or a file path") from None
    cache = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(entry.url))
    if not os.path.exists(cache):
        raise ConfigError(
            f"model.weights={weights} is not in the torch cache ({cache}); download it once or pass a local file path"
        )
    return torch.load(cache, map_location="cpu")


def load_pretrained(model: nn.Module, name: str, weights: str) -> None:
    state = (
        _state_dict_from_file(weights)
        if os.path.sep in weights or os.path.exists(weights)
        else _torchvision_weights(name, weights)
    )
    own = model.state_dict()
    # a different number of classes keeps the fresh classifier (fine-tuning on a new dataset)
    state = {k: v for k, v in state.items() if not (k in own and own[k].shape != v.shape and k.startswith("fc."))}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise CheckpointError(
            f"model.weights={weights!r} does not fit {name}: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )


def random_weights_note(name: str, pretrained: bool) -> Optional[str]:
    """One line for a torchvision ResNet that starts from random weights, else None. These are
    ImageNet models whose SparseML recipes fine-tune dense weights: a from-scratch start is
    rarely what a recipe's numbers assume, so a run says it once at its start."""
    if name not in TORCHVISION_RESNETS or pretrained:
        return None
    return (
        f"[model] {name} starts from random weights (model.pretrained=false); SparseML's model cards "
        "train from dense ImageNet weights: model.pretrained=true (model.weights: a torchvision weights name or a file)"
    )


def _zero_init_last_bn(model: nn.Module) -> None:
    """Each residual branch starts as identity (Goyal et al.): zero its last BN's scale."""
    for m in model.modules():
        last_bn = getattr(m, "bn3", None) if hasattr(m, "conv3") else getattr(m, "bn2", None)
        if hasattr(m, "skip_add") and isinstance(last_bn, nn.BatchNorm2d):
            nn.init.zeros_(last_bn.weight)


def build_model(
    name: str = "resnet_small",
    num_classes: int = 10,
    pretrained: bool = False,
    weights: Optional[str] = None,
    width: int = 16,
    depth: int = 8,
    zero_init_residual: bool = False,
) -> nn.Module:
    if name not in MODEL_NAMES:
        raise ConfigError(f"model.name={name!r} is not supported; allowed: {', '.join(MODEL_NAMES)}")
    if num_classes <= 0:
        raise ConfigError(f"model.num_classes={num_classes} must be > 0")
    if name == "resnet_small":
        try:
            model = SmallResNet(num_classes=num_classes, depth=depth, width=width)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    else:
        model = _torchvision_resnet(name, num_classes)
    if zero_init_residual:
        _zero_init_last_bn(model)
    if pretrained:
        if not weights:
            raise ConfigError("model.pretrained=true needs model.weights (a file path or a torchvision weights name)")
        load_pretrained(model, name, weights)
    return model
