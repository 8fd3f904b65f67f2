"""The schemas of the config groups that are not registries: each YAML in ``configs/<group>/``
is merged onto one of these.

A value lives once: where a group's YAML files set a key, the schema says only its type
(``MISSING``); a schema default is a value the YAML files rely on. The registries' groups
(model, sparsity, quantization, logger) have their schemas beside their builders
(``acdc_exp/registries.py``), found from the config's ``_target_`` (``config/variants.py``).
A data or lr_schedule option with keys of its own names its schema in its defaults list
(``/schema/data@_here_: fashion_mnist``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from omegaconf import MISSING


@dataclass
class DataConfig:
    # the dataset's name (digits, imagenet, ...); digits with no paths builds its .beton files
    name: str = MISSING
    loader: str = MISSING  # ffcv | folder
    train_path: Optional[str] = MISSING  # .beton file (ffcv) or ImageFolder dir (folder)
    val_path: Optional[str] = MISSING
    # imagenet_ffcv: the folder acdc-data write filled, and the settings it wrote with (stored
    # max side, JPEG share, JPEG quality), which name the files (data/beton_names.py); the
    # stored max side is not max_res, the progressive-resizing ramp's end
    beton_dir: Optional[str] = None
    max_resolution: Optional[int] = None
    compress_probability: Optional[float] = None
    jpeg_quality: Optional[int] = None
    # images in the train split, when known without reading the data (acdc-schedule's steps
    # per epoch; training counts the real ones)
    train_images: Optional[int] = None
    # digits: where the generated ImageFolder tree and .beton files are cached
    cache_dir: Optional[str] = MISSING
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
    crop_padding: int = 0
    order: str = MISSING  # random | quasi_random | sequential
    os_cache: bool = MISSING
    batches_ahead: int = MISSING
    drop_last: bool = MISSING
    # 0-255 scale; normalization happens on the device, not in the loader pipeline
    mean: List[float] = MISSING
    std: List[float] = MISSING
    # the split evaluated every epoch and at the end: val, or test where the dataset has one
    # apart from val (fashion_mnist: val is a holdout of the training images for tuning, test
    # the 10,000 test images for a study's frozen settings)
    eval_split: str = "val"
    # cap on batches per epoch (dry runs); null = full epoch
    limit_train_batches: Optional[int] = MISSING
    limit_val_batches: Optional[int] = MISSING


@dataclass
class FashionMnistDataConfig(DataConfig):
    # the folder holding the four gzip IDX files (the Debian package's by default)
    source_dir: str = MISSING
    # the last this-many training images form the val split (5,000: Fashion-MNIST's usual holdout)
    holdout: int = MISSING


@dataclass
class OptimizerConfig:
    _target_: str = MISSING
    # The per-step lr and weight decay come from the plan; these are the initial values.
    lr: float = MISSING
    momentum: float = MISSING
    nesterov: bool = MISSING
    weight_decay: float = MISSING
    # False follows common practice of not decaying BN and bias parameters
    decay_bn_and_bias: bool = MISSING
    # one fused kernel per step; null = fused on CUDA (fp16's GradScaler then checks for
    # inf/nan gradients on the device, with no host sync per step), foreach elsewhere
    fused: Optional[bool] = MISSING


@dataclass
class LRSegment:
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
class WeightDecaySegment:
    """SetWeightDecayModifier: ``weight_decay`` from ``start_epoch`` on."""

    start_epoch: float = 0.0
    weight_decay: float = MISSING


@dataclass
class LRScheduleConfig:
    """Segments are what the plan reads (lr_schedule/segments.yaml: given whole, as an
    experiment or a recipe does)."""

    name: str = MISSING
    segments: List[LRSegment] = MISSING
    # empty: optimizer.weight_decay all the way
    weight_decay: List[WeightDecaySegment] = MISSING


@dataclass
class PresetLRScheduleConfig(LRScheduleConfig):
    """A preset (warmup_cosine, constant): segments interpolated from a few knobs."""

    warmup_epochs: float = MISSING
    peak_lr: float = MISSING
    warmup_start_lr: float = MISSING


@dataclass
class TrainerConfig:
    epochs: int = MISSING
    device: str = MISSING  # auto | cpu | cuda
    amp: str = MISSING  # auto (fp16 on CUDA, off on CPU) | off | bf16 | fp16: training/precision.py
    # NHWC weights and batches: true / false on any device; null = on CUDA only (on CPU small
    # convolutions run no faster NHWC, and NCHW keeps CPU results as they were)
    channels_last: Optional[bool] = MISSING
    label_smoothing: float = MISSING
    eval_every_epochs: int = MISSING
    checkpoint_every_epochs: int = MISSING
    # auto: continue from <run_dir>/checkpoints/last.pt when it exists (SLURM requeue);
    # never: always start fresh; or a path to a checkpoint file or run dir
    resume: str = MISSING
    resume_force: bool = MISSING  # resume even when the checkpoint's run fingerprint differs
    progress: bool = MISSING
    num_threads: Optional[int] = MISSING  # torch intra-op threads; null = leave torch's default
    deterministic: bool = MISSING
    # stop after this many optimizer steps, saving last.pt as a preemption would (resumable)
    max_steps: Optional[int] = MISSING
    export_onnx: bool = MISSING
    # torch.compile the forward pass (after DDP wrapping); recompiled when QAT swaps modules
    compile: bool = MISSING
    compile_mode: Optional[str] = MISSING  # torch.compile's mode: null | default | reduce-overhead | max-autotune
    # SyncBatchNorm under DDP: auto (on below 32 images per process) | true | false
    sync_batchnorm: str = MISSING
    # recompute BatchNorm statistics from the last N training batches before each evaluation
    # (0 = off; training/bn_recalibration.py)
    bn_recalibration_batches: int = MISSING


@dataclass
class PathsConfig:
    runs_root: str = MISSING
    run_dir: str = MISSING
    data_cache: str = MISSING


# The variant schemas of the groups that are not registries yet (values differ, builders do not),
# by group and option name (config/schema.py stores them; the option's defaults list names one).
VARIANTS = {"data": {"fashion_mnist": FashionMnistDataConfig}, "lr_schedule": {"preset": PresetLRScheduleConfig}}
