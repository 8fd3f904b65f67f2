"""Pieces a training run is built from: the device, the seeds, the optimizer."""

from __future__ import annotations

import os
import random
from typing import Any, Dict, List, Mapping, Optional

import numpy as np
import torch
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf
from torch import nn

from acdc_exp.errors import ConfigError

# what SLURM sets when a job or step was given GPUs (gres/gpu, --gpus*, the GPU presets)
SLURM_GPU_VARIABLES = ("SLURM_GPUS_ON_NODE", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS", "SLURM_GPUS_PER_NODE", "SLURM_GPUS")


def gpus_granted(env: Mapping[str, str] = os.environ) -> Optional[str]:
    """``NAME=value`` of the first SLURM variable saying this job holds GPUs, else None."""
    for name in SLURM_GPU_VARIABLES:
        value = env.get(name, "").strip()
        if value and value not in ("0", "(null)", "N/A"):
            return f"{name}={value}"
    return None


def cuda_unusable_reason() -> str:
    """Why ``torch.cuda.is_available()`` is false, in words (driver too old, no device, CPU build)."""
    if torch.version.cuda is None:
        return f"this torch ({torch.__version__}) is a CPU-only build"
    try:
        torch.cuda.init()
    except Exception as exc:  # torch says why: driver too old, no driver, no device
        return " ".join(str(exc).split())[:200]
    return "torch sees no CUDA device"


def resolve_device(name: str, env: Mapping[str, str] = os.environ) -> torch.device:
    """``trainer.device``: ``auto`` is CUDA when usable, CPU otherwise; but a job SLURM gave
    GPUs never falls back to CPU (an 8-GPU job silently on CPU would run for weeks)."""
    if torch.cuda.is_available():
        return torch.device("cuda" if name == "auto" else name)
    granted = gpus_granted(env)
    if name == "cuda" or (name == "auto" and granted):
        asked = "trainer.device=cuda" if name == "cuda" else f"SLURM gave this job GPUs ({granted})"
        raise ConfigError(
            f"{asked} but CUDA is unusable: {cuda_unusable_reason()}; "
            "install the torch build for this node's driver (requirements/lock.txt), or trainer.device=cpu"
        )
    return torch.device(name if name != "auto" else "cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_optimizer(cfg: DictConfig, model: nn.Module) -> torch.optim.Optimizer:
    """``cfg`` is OptimizerConfig. BN and bias parameters go to a no-decay group on request;
    the group's ``decay`` flag tells the trainer whether the plan's weight decay applies."""
    decay: List[nn.Parameter] = []
    no_decay: List[nn.Parameter] = []
    for _, p in model.named_parameters():
        (no_decay if (p.ndim <= 1 and not cfg.decay_bn_and_bias) else decay).append(p)
    groups = [{"params": decay, "decay": True}]
    if no_decay:
        groups.append({"params": no_decay, "decay": False, "weight_decay": 0.0})
    kwargs = OmegaConf.to_container(cfg, resolve=True)
    kwargs.pop("decay_bn_and_bias")
    target = kwargs.pop("_target_")
    if kwargs.get("fused") is None:
        # on CUDA the fused step reads GradScaler's found_inf on the device: no .item() per step
        on_cuda = all(p.is_cuda for p in decay + no_decay)
        kwargs["fused"] = True if on_cuda else None
    optimizer = get_class(target)(groups, **kwargs)
    if kwargs.get("fused") and kwargs.get("momentum"):
        # the fused SGD kernel creates momentum buffers uninitialized and, when GradScaler finds
        # inf/nan in the first step's gradients (routine at fp16's starting scale), returns before
        # writing them: start from zeros, which gives the unfused first step exactly (buf = grad)
        for group in optimizer.param_groups:
            for p in group["params"]:
                optimizer.state[p]["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    return optimizer


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: Dict[str, Any]) -> None:
    """``optimizer.load_state_dict(state)``, keeping how its step runs (``fused``/``foreach``)
    as it was built here: a checkpoint from another device or an earlier version would switch
    it, and a fused optimizer whose groups say fused=None breaks GradScaler's step."""
    built = [{k: g[k] for k in ("fused", "foreach") if k in g} for g in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, keep in zip(optimizer.param_groups, built):
        group.update(keep)
