"""The config groups' registries and the schema every variant of a group has.

A variant's own schema subclasses its group's base here and lives beside its builder
(``sparsity/methods/acdc.py``, ``data/datasets/fashion_mnist.py``, ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

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


@dataclass
class DataConfig(VariantConfig):
    """Every dataset: its _target_ (data/datasets/: where the files come from) and how the
    loader reads them."""

    # the dataset's label in messages and summaries; by default its variant's name
    name: str = "${variant:${._target_}}"
    loader: str = MISSING  # data/loaders.py: ffcv | folder
    num_classes: int = MISSING
    # global batches (all processes of a DDP run together); each process loads batch / world_size
    batch_size: int = MISSING
    val_batch_size: int = MISSING
    # loader workers per process; null = the CPUs the process has (SLURM allocation or affinity
    # mask, shared among torchrun's local processes) less one
    num_workers: Optional[int] = MISSING
    # training resolution; progressive resizing ramps min_res -> max_res over
    # [start_ramp, end_ramp] epochs as FFCV's ResNet-50 configs do (disabled when null)
    res: int = MISSING
    min_res: Optional[int] = MISSING
    max_res: Optional[int] = MISSING
    start_ramp: Optional[int] = MISSING
    end_ramp: Optional[int] = MISSING
    val_res: int = MISSING
    # torchvision's RandomResizedCrop scale for train; val uses a center crop of ratio 224/256
    crop_scale_min: float = MISSING
    center_crop_ratio: float = MISSING
    random_flip: bool = MISSING
    random_resized_crop: bool = MISSING
    # random crop with zero padding of this many pixels (the small-image augmentation; FFCV
    # loader only); 0 = off
    crop_padding: int = MISSING
    order: str = MISSING  # random | quasi_random | sequential
    os_cache: bool = MISSING
    batches_ahead: int = MISSING
    drop_last: bool = MISSING
    # 0-255 scale; normalization happens on the device, not in the loader pipeline
    mean: List[float] = MISSING
    std: List[float] = MISSING
    # the split evaluated every epoch and at the end: val, or test where the dataset has one
    # apart from val (its variant's ``splits``)
    eval_split: str = MISSING
    # cap on batches per epoch (dry runs); null = full epoch
    limit_train_batches: Optional[int] = MISSING
    limit_val_batches: Optional[int] = MISSING


@dataclass
class LRSegmentConfig:
    """One SparseML-style LR modifier: ``func`` over [start_epoch, end_epoch).

    ``func``: linear | cosine | constant (``constant`` is SetLearningRateModifier:
    ``init_lr`` from ``start_epoch`` on, ``end_epoch`` may be null).
    After a segment ends the lr holds its last value until a later segment starts.
    """

    func: str = "constant"
    start_epoch: float = 0.0
    end_epoch: Optional[float] = None
    init_lr: float = MISSING
    final_lr: float = 0.0


@dataclass
class WeightDecaySegmentConfig:
    """SetWeightDecayModifier: ``weight_decay`` from ``start_epoch`` on."""

    start_epoch: float = 0.0
    weight_decay: float = MISSING


@dataclass
class LRScheduleConfig(VariantConfig):
    """Every lr schedule: SparseML's segments, which the plan reads (plan/lr_schedules/)."""

    name: str = MISSING  # a label (fingerprints ignore it)
    segments: List[LRSegmentConfig] = MISSING
    # empty: optimizer.weight_decay all the way
    weight_decay: List[WeightDecaySegmentConfig] = MISSING


SPARSITY = Registry("sparsity", VariantConfig, handle="acdc_exp.registries.SPARSITY")
QUANTIZATION = Registry("quantization", VariantConfig, handle="acdc_exp.registries.QUANTIZATION")
LOGGERS = Registry("logger", LoggerConfig, handle="acdc_exp.registries.LOGGERS")
DATA = Registry("data", DataConfig, handle="acdc_exp.registries.DATA")
LR_SCHEDULES = Registry("lr_schedule", LRScheduleConfig, handle="acdc_exp.registries.LR_SCHEDULES")
# a model is any Hydra _target_ building an nn.Module; registering adds a schema and traits
MODELS = Registry("model", ModelConfig, handle="acdc_exp.registries.MODELS", open_targets=True)

# the groups whose configs are typed by their variant (config/variants.py)
GROUPS = {
    "model": MODELS,
    "data": DATA,
    "lr_schedule": LR_SCHEDULES,
    "sparsity": SPARSITY,
    "quantization": QUANTIZATION,
    "logger": LOGGERS,
}
