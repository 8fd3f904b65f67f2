"""Variants added from outside the package, as a user adds them: a sparsity method with its own
schedule and mask rule, a logger, and a model given the usual Hydra way (a ``_target_`` with its
keyword arguments, not registered). Their YAML files are in ``configs/`` beside this module;
tests/e2e/test_extending.py puts both on the search paths and trains with them."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import torch
from omegaconf import MISSING, DictConfig
from torch import nn

from acdc_exp.loggers.base import Logger
from acdc_exp.plan.sparsity_schedule import COMPRESSED, DENSE, SparsitySchedule
from acdc_exp.records import MaskUpdate
from acdc_exp.registries import LOGGERS, SPARSITY, LoggerConfig, VariantConfig
from acdc_exp.sparsity.methods.base import SparsityMethod
from acdc_exp.sparsity.sparsifier import Sparsifier


# --- a sparsity method: one-shot pruning at start_epoch, by position ---------------------------
@dataclass
class OneShotConfig(VariantConfig):
    sparsity: float = MISSING
    params: List[str] = MISSING
    start_epoch: float = MISSING


@dataclass
class OneShotSchedule(SparsitySchedule):
    target: float
    start_epoch: float

    def phase(self, epoch: float) -> str:
        return COMPRESSED if epoch >= self.start_epoch - 1e-9 else DENSE

    def sparsity(self, epoch: float) -> float:
        return self.target if self.phase(epoch) == COMPRESSED else 0.0

    def update_epochs(self) -> List[float]:
        return [self.start_epoch]


def prefix_masks(weights: List[torch.Tensor], sparsity: float) -> List[torch.Tensor]:
    """Keep the first (1 - sparsity) of each weight's entries in flat order: a rule no built-in
    method has, so a run that used magnitude masks instead is caught."""
    masks = []
    for w in weights:
        keep = torch.zeros(w.numel(), dtype=torch.bool)
        keep[: round((1.0 - sparsity) * w.numel())] = True
        masks.append(keep.view_as(w))
    return masks


@SPARSITY.register(schema=OneShotConfig)
class OneShot(SparsityMethod):
    @property
    def target_sparsity(self) -> float:
        return float(self.cfg.sparsity)

    @property
    def mask_type(self) -> str:
        return "prefix"

    def schedule(self) -> OneShotSchedule:
        return OneShotSchedule(target=float(self.cfg.sparsity), start_epoch=float(self.cfg.start_epoch))

    def sparsifier(self, model: nn.Module) -> Sparsifier:
        return Sparsifier(model, params=list(self.cfg.params), mask_rule=prefix_masks)


# --- a logger: one JSON line per record, in a file of the run dir ------------------------------
@dataclass
class JsonLinesConfig(LoggerConfig):
    file: str = MISSING


class JsonLinesLogger(Logger):
    def __init__(self, path: Path, resume_id: Optional[str]) -> None:
        self.path = path
        # checkpoints keep the logger's run id; a resume hands it back (as W&B continues its run)
        self.run_id = resume_id or uuid.uuid4().hex
        self._write({"start": self.run_id, "resumed": resume_id is not None})

    def _write(self, record: Mapping[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def log_eval(self, metrics: Mapping[str, Any], step: int, epoch: float) -> None:
        self._write({"eval": step, **{k: v for k, v in metrics.items() if isinstance(v, (int, float, str))}})

    def log_mask_update(self, update: MaskUpdate, step: int) -> None:
        self._write({"mask_update": step, "global_sparsity": update.global_sparsity})

    def log_summary(self, summary: Dict[str, Any]) -> None:
        self._write({"summary": summary["final_top1"]})


@LOGGERS.register(schema=JsonLinesConfig)
def json_lines(cfg: DictConfig, *, run_dir: Path, resume_id: Optional[str], **run: Any) -> Logger:
    return JsonLinesLogger(Path(run_dir) / str(cfg.file), resume_id)


# --- a model, the usual Hydra way: nothing registered -------------------------------------------
class TinyNet(nn.Module):
    def __init__(self, num_classes: int, hidden: int = 8) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, hidden, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.conv2 = nn.Conv2d(hidden, hidden, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(hidden)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))
