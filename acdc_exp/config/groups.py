"""The schemas of the config groups that are not registries: each YAML in ``configs/<group>/``
is merged onto one of these.

A value lives once: where a group's YAML files set a key, the schema says only its type
(``MISSING``); a schema default is a value the YAML files rely on. The registries' groups
(model, data, sparsity, quantization, lr_schedule, logger) have their schemas beside their
builders (``acdc_exp/registries.py``), found from the config's ``_target_``
(``config/variants.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from omegaconf import MISSING


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
