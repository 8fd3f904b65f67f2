"""Pieces a training run is built from: the device, the seeds, the optimizer."""

from __future__ import annotations

import random
from typing import Any, Dict, List

import numpy as np
import torch
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf
from torch import nn

from acdc_exp.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("trainer.device=cuda but no CUDA device is visible; allowed here: cpu, auto")
    return torch.device(name)


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
