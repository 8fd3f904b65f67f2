"""Build a model from its config, one way for training and for reloading a saved run, and
load the weights a run starts from.

A model's config is a Hydra ``_target_`` with its keyword arguments (``configs/model/*.yaml``),
plus ``pretrained``/``weights`` (``registries.ModelConfig``), which never reach the builder:
training loads them after building; a reload from a checkpoint skips them (the checkpoint
holds the weights, and the file it started from may be gone).
"""

from __future__ import annotations

import functools
import os
from typing import Any, Mapping, Optional

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from acdc_exp.errors import AcdcError, CheckpointError, ConfigError
from acdc_exp.models.small_resnet import small_resnet
from acdc_exp.models.torchvision_resnet import DEPTHS, quantizable_resnet
from acdc_exp.registries import MODELS

START_KEYS = ("pretrained", "weights")  # where weights start: not the builder's arguments

# the built-in models by the names tests and benchmarks use (build_model)
BUILT_IN = {"resnet_small": small_resnet, **{name: functools.partial(quantizable_resnet, name) for name in DEPTHS}}
MODEL_NAMES = tuple(BUILT_IN)


def build_model(name: str = "resnet_small", num_classes: int = 10, **arch: Any) -> nn.Module:
    """A built-in model by name (``resnet_small``, ``resnet18/34/50``), random weights."""
    if name not in BUILT_IN:
        raise ConfigError(f"model.name={name!r} is not a built-in model; allowed: {', '.join(MODEL_NAMES)}")
    return BUILT_IN[name](num_classes=num_classes, **arch)


def model_from_config(cfg: Mapping[str, Any], *, start_weights: bool = True) -> nn.Module:
    """The model ``cfg`` (a model group's config, typed or as a checkpoint stores it) builds;
    with ``start_weights`` the weights it names are loaded (training), else not (a reload)."""
    typed = MODELS.typed(OmegaConf.create(dict(cfg)) if not isinstance(cfg, DictConfig) else cfg)
    arch = {k: v for k, v in typed.items() if k not in START_KEYS}
    try:
        model = instantiate(arch, _convert_="all")
    except AcdcError:
        raise
    except Exception as exc:  # Hydra wraps the builder's error
        cause = exc.__cause__ if isinstance(exc.__cause__, AcdcError) else exc
        if isinstance(cause, AcdcError):
            raise cause from None
        raise ConfigError(f"model._target_={typed._target_} failed to build: {' '.join(str(exc).split())[:200]}") from None
    if start_weights and typed.pretrained:
        if not typed.weights:
            raise ConfigError("model.pretrained=true needs model.weights (a file path or a torchvision weights name)")
        load_pretrained(model, str(typed.weights))
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


def _torchvision_weights(weights: str) -> dict:
    """A torchvision weights entry (``ResNet50_Weights.IMAGENET1K_V1``), only if it is already
    in the local torch hub cache (no network on compute nodes)."""
    from torchvision.models import get_weight  # torchvision's model zoo takes seconds to import

    try:
        entry = get_weight(weights)
    except (KeyError, ValueError, AttributeError):
        raise ConfigError(
            f"model.weights={weights!r} is neither a file nor a torchvision weights name; "
            "allowed: a file path, or <Enum>.<entry> such as ResNet50_Weights.IMAGENET1K_V1"
        ) from None
    cache = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(entry.url))
    if not os.path.exists(cache):
        raise ConfigError(
            f"model.weights={weights} is not in the torch cache ({cache}); download it once or pass a local file path"
        )
    return torch.load(cache, map_location="cpu")


def load_pretrained(model: nn.Module, weights: str) -> None:
    """Load ``weights`` (a file, or a torchvision weights name) into ``model``; a classifier of
    another size keeps its fresh weights (fine-tuning on a new dataset)."""
    state = _state_dict_from_file(weights) if os.path.sep in weights or os.path.exists(weights) else _torchvision_weights(weights)
    own = model.state_dict()
    state = {k: v for k, v in state.items() if not (k in own and own[k].shape != v.shape and k.startswith("fc."))}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise CheckpointError(
            f"model.weights={weights!r} does not fit {type(model).__name__}: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )


def model_label(cfg: Mapping[str, Any]) -> str:
    """What messages call the model ``cfg`` builds: its variant's label (a torchvision ResNet's
    architecture), else the variant's name."""
    variant = MODELS.variant(cfg)
    label = variant.trait("label")
    return label(cfg) if label else variant.name


def random_weights_note(cfg: Mapping[str, Any]) -> Optional[str]:
    """One line for a model whose recipes start from pretrained weights (its variant's trait)
    that starts from random ones, else None: a from-scratch start is rarely what a SparseML
    recipe's numbers assume, so a run says it once at its start."""
    if cfg["pretrained"] or not MODELS.variant(cfg).trait("starts_from_pretrained", False):
        return None
    return (
        f"[model] {model_label(cfg)} starts from random weights (model.pretrained=false); SparseML's model cards "
        "train from dense ImageNet weights: model.pretrained=true (model.weights: a torchvision weights name or a file)"
    )
