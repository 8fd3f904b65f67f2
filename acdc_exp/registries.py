"""The config groups' registries and the schema every variant of a group has.

A variant's own schema subclasses its group's base here and lives beside its builder
(``sparsity/methods/acdc.py``, ``loggers/wandb_logger.py``, ...). Data sources and lr
schedules are not registries yet: their YAMLs differ in values, not in builders.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from omegaconf import MISSING

from acdc_exp.registry import Registry


@dataclass
class VariantConfig:
    """What every variant's config has: the builder it chooses."""

    _target_: str = MISSING


@dataclass
class ModelConfig(VariantConfig):
    """Every model: the builder's keyword arguments (its own keys) plus where weights start.
    ``pretrained``/``weights`` never reach the builder: the run loads them after building
    (``models/factory.py::model_from_config``), and a reload from a checkpoint skips them. The
    defaults serve a model given only its ``_target_``; the shipped YAMLs write them out, so the
    command line can set them (``model.pretrained=true``)."""

    num_classes: int = MISSING
    # start from these weights: a local file (state dict or checkpoint), or a torchvision
    # weights name such as ResNet50_Weights.IMAGENET1K_V1 found in the torch cache
    pretrained: bool = False
    weights: Optional[str] = None


@dataclass
class LoggerConfig(VariantConfig):
    """Every logger: how often the trainer builds a step row for it."""

    log_every_steps: int = MISSING


SPARSITY = Registry("sparsity", VariantConfig, handle="acdc_exp.registries.SPARSITY")
QUANTIZATION = Registry("quantization", VariantConfig, handle="acdc_exp.registries.QUANTIZATION")
LOGGERS = Registry("logger", LoggerConfig, handle="acdc_exp.registries.LOGGERS")
# a model is any Hydra _target_ building an nn.Module; registering adds a schema and traits
MODELS = Registry("model", ModelConfig, handle="acdc_exp.registries.MODELS", open_targets=True)

# the groups whose configs are typed by their variant (config/variants.py)
GROUPS = {"sparsity": SPARSITY, "quantization": QUANTIZATION, "logger": LOGGERS, "model": MODELS}
