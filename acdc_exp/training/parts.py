"""What a run is made of, built once (``runs/train.py``) and handed to the trainer, which calls
their hooks, and to the run's end (``runs/finish.py``), which reads what was built."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from acdc_exp.loggers.base import Logger
from acdc_exp.plan import Plan
from acdc_exp.sparsity.methods.base import SparsityMethod
from acdc_exp.sparsity.sparsifier import Sparsifier
from acdc_exp.training.distributed import DistInfo


@dataclass
class RunParts:
    cfg: DictConfig  # the composed, validated train config
    model: nn.Module  # the bare module (hooks and checkpoints use it; the trainer wraps it)
    data: Any  # data.DataModule
    optimizer: torch.optim.Optimizer
    plan: Plan
    method: SparsityMethod  # the sparsity variant the plan's schedule and the sparsifier came from
    sparsifier: Sparsifier
    quantizer: Any  # the quantization variant's controller (quantization.build_quantizer)
    logger: Logger
    run_dir: Path
    device: torch.device
    dist: DistInfo = DistInfo()
