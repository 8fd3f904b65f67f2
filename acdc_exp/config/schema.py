"""Structured configs: the typed schema every Hydra config in ``configs/`` is merged into.

Because each group's YAML is merged onto one of these dataclasses, a typo in an override
(``optimizer.lrr=0.1``) or a wrong type (``trainer.epochs=ten``) is a Hydra error instead of a
silently ignored key. Range checks that types cannot express live in ``validate.py``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, List, Optional

from omegaconf import MISSING


@dataclass
class ModelConfig:
    _target_: str = "acdc_exp.models.factory.build_model"
    # torchvision: resnet18 / resnet34 / resnet50; small: resnet_small (32x32 inputs)
    name: str = "resnet_small"
    num_classes: int = 10
    # Recipe's ``--pretrained True``: start from dense weights. ``weights`` is a local file
    # (state dict or checkpoint) or a torchvision weights enum name found in the torch cache.
    pretrained: bool = False
    weights: Optional[str] = None
    width: int = 16  # base width of the small ResNet
    depth: int = 8  # small ResNet depth (6n+2)
    zero_init_residual: bool = False


@dataclass
class DataConfig:
    # digits | imagenet_ffcv | imagenet_folder | folder_ffcv: which loader builds the batches
    name: str = "digits"
    loader: str = "ffcv"  # ffcv | folder
    train_path: Optional[str] = None  # .beton file (ffcv) or ImageFolder dir (folder)
    val_path: Optional[str] = None
    # digits: where the generated ImageFolder tree and .beton files are cached
    cache_dir: Optional[str] = None
    num_classes: int = 10
    # global batches (all processes of a DDP run together); each process loads batch / world_size
    batch_size: int = 64
    val_batch_size: int = 256
    # loader workers per process; null = the CPUs the process has (SLURM allocation or affinity
    # mask, shared among torchrun's local processes) less one
    num_workers: Optional[int] = 1
    # training resolution; progressive resizing ramps min_res -> max_res over
    # [start_ramp, end_ramp] epochs as FFCV's ResNet-50 configs do (disabled when null)
    res: int = 32
    min_res: Optional[int] = None
    max_res: Optional[int] = None
    start_ramp: Optional[int] = None
    end_ramp: Optional[int] = None
    val_res: int = 32
    # torchvision's RandomResizedCrop scale for train; val uses a center crop of ratio 224/256
    crop_scale_min: float = 0.08
    center_crop_ratio: float = 0.875
    random_flip: bool = True
    random_resized_crop: bool = True
    order: str = "random"  # random | quasi_random | sequential
    os_cache: bool = True
    batches_ahead: int = 2
    drop_last: bool = True
    # 0-255 scale; normalization happens on the device, not in the loader pipeline
    mean: List[float] = field(default_factory=lambda: [123.675, 116.28, 103.53])
    std: List[float] = field(default_factory=lambda: [58.395, 57.12, 57.375])
    # cap on batches per epoch (dry runs); null = full epoch
    limit_train_batches: Optional[int] = None
    limit_val_batches: Optional[int] = None


@dataclass
class OptimizerConfig:
    _target_: str = "torch.optim.SGD"
    # The per-step lr and weight decay come from the plan; these are the initial values.
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-5
    # False follows common practice of not decaying BN and bias parameters
    decay_bn_and_bias: bool = True


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
    name: str = "warmup_cosine"
    # convenience knobs the preset segments interpolate; segments are what the plan reads
    warmup_epochs: float = 0.0
    peak_lr: float = 0.1
    warmup_start_lr: float = 0.0
    segments: List[LRSegment] = field(default_factory=list)
    # empty: optimizer.weight_decay all the way
    weight_decay: List[WeightDecaySegment] = field(default_factory=list)


@dataclass
class PhaseConfig:
    """An explicit AC/DC phase, for schedules the periodic rule cannot express."""

    start_epoch: float = MISSING
    end_epoch: float = MISSING
    phase: str = MISSING  # dense | compressed


@dataclass
class SparsityConfig:
    method: str = "acdc"  # acdc | gmp | dense
    sparsity: float = 0.9  # compression (AC/DC) or final (GMP) sparsity
    mask_type: str = "unstructured"  # unstructured | block4 | N:M such as 2:4
    global_sparsity: bool = False
    # weight names or glob patterns; SparseML ResNet names are accepted as aliases
    params: List[str] = field(default_factory=lambda: ["*conv*.weight"])
    start_epoch: float = 0.0
    end_epoch: float = 0.0
    update_frequency: float = 1.0
    # explicit phases replace the periodic rule (the AC/DC paper's own variant)
    phases: Optional[List[PhaseConfig]] = None
    # GMP: cubic ramp from init_sparsity at start_epoch to sparsity at end_epoch
    init_sparsity: float = 0.05
    # when a dense phase begins: all | pruned | none (acdc_exp/sparsity/sparsifier.py)
    reset_momentum: str = "all"
    # output channels pruned whole: regrow | keep_pruned in dense phases (sparsifier.py)
    dead_channels: str = "regrow"
    # keep the k largest weights (blocks) of every output channel when masking (masks.py)
    min_kept_per_channel: int = 0
    # lr ramps 0 -> schedule over this many epochs at the start of each dense phase after a
    # compressed one (plan/plan.py::regrowth_lr_factor)
    dense_phase_warmup_epochs: float = 0.0


@dataclass
class QuantizationConfig:
    enabled: bool = False
    start_epoch: float = 0.0
    # recipe submodule names: input = stem (conv1/bn1/relu), sections = layer1..layer4
    submodules: List[str] = field(default_factory=lambda: ["input", "sections"])
    disable_observer_epoch: Optional[float] = None
    freeze_bn_stats_epoch: Optional[float] = None
    fuse: bool = True
    per_channel: bool = False
    # 7-bit activations: int8 kernels without VNNI/AMX saturate on 8-bit ones (QATController.int8_exact_on_this_cpu)
    reduce_range: bool = True
    num_bits: int = 8
    backend: str = "x86"


@dataclass
class LoggerConfig:
    kind: str = "console"  # none | console | wandb
    mode: str = "offline"  # online | offline | disabled
    project: str = "acdc-exp"
    entity: Optional[str] = None
    group: Optional[str] = None
    tags: List[str] = field(default_factory=list)
    job_type: str = "train"
    name: Optional[str] = None  # default: derived from experiment and overrides
    log_every_steps: int = 10
    log_artifacts: bool = False


@dataclass
class TrainerConfig:
    epochs: int = 10
    device: str = "auto"  # auto | cpu | cuda
    amp: str = "auto"  # auto (fp16 on CUDA, off on CPU) | off | bf16 | fp16: training/precision.py
    # NHWC weights and batches: true / false on any device; null = on CUDA only (on CPU small
    # convolutions run no faster NHWC, and NCHW keeps CPU results as they were)
    channels_last: Optional[bool] = None
    label_smoothing: float = 0.0
    eval_every_epochs: int = 1
    checkpoint_every_epochs: int = 1
    # auto: continue from <run_dir>/checkpoints/last.pt when it exists (SLURM requeue);
    # never: always start fresh; or a path to a checkpoint file or run dir
    resume: str = "auto"
    progress: bool = True
    num_threads: Optional[int] = None  # torch intra-op threads; null = leave torch's default
    deterministic: bool = False
    # stop after this many optimizer steps, saving last.pt as a preemption would (resumable)
    max_steps: Optional[int] = None
    export_onnx: bool = False
    # torch.compile the forward pass (after DDP wrapping); recompiled when QAT swaps modules
    compile: bool = False
    compile_mode: Optional[str] = None  # torch.compile's mode: null | default | reduce-overhead | max-autotune
    # recompute BatchNorm statistics from the last N training batches before each evaluation
    # (0 = off; training/bn_recalibration.py)
    bn_recalibration_batches: int = 0


@dataclass
class PathsConfig:
    runs_root: str = "runs"
    run_dir: str = "."
    data_cache: str = "data_cache"


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    lr_schedule: LRScheduleConfig = field(default_factory=LRScheduleConfig)
    sparsity: SparsityConfig = field(default_factory=SparsityConfig)
    quantization: QuantizationConfig = field(default_factory=QuantizationConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    seed: int = 0
    # a SparseML recipe (YAML, or Markdown with a YAML fence) that sets the schedule
    recipe: Optional[str] = None
    recipe_args: Optional[Any] = None
    # checkpoint to start from (acdc-eval, or fine-tuning)
    checkpoint: Optional[str] = None
    experiment_name: str = "default"
    # set by sweeps/*.yaml; names the W&B group of a multirun
    sweep_name: Optional[str] = None


def run_stamp(fmt: str) -> str:
    """The leaf of a run dir: the local time as ``fmt``, or under torchrun (several ranks, each
    composing its own config a moment apart) ``torchrun_<rendezvous id>``, which every rank of
    the job shares and a restart with the same ``--rdzv-id`` finds again (resume)."""
    run_id = os.environ.get("TORCHELASTIC_RUN_ID")
    if run_id and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return f"torchrun_{run_id}"
    return datetime.now().strftime(fmt)


def register_configs() -> None:
    """Register the schema so ``configs/train.yaml`` can name it in its defaults list, and the
    ``run_stamp`` resolver its run dir uses."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("run_stamp"):
        OmegaConf.register_new_resolver("run_stamp", run_stamp, use_cache=True)

    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
