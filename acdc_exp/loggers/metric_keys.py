"""The name of every metric a run logs, defined once. The trainer builds its rows here and
every logger writes them as they are (W&B sections: ``train/*`` and ``schedule/*`` per step,
``val/*`` per epoch)."""

from __future__ import annotations

from typing import Any, Dict, Mapping

TRAIN_LOSS = "train/loss"
TRAIN_TOP1 = "train/top1"
IMG_PER_S = "train/img_per_s"
LR = "schedule/lr"
WEIGHT_DECAY = "schedule/weight_decay"
PHASE = "schedule/phase"
PHASE_NAME = "schedule/phase_name"
TARGET_SPARSITY = "schedule/target_sparsity"
EPOCH = "epoch"
# validation metrics by the phase they were measured in
EVAL_PREFIX = {"dense": "val/dense", "compressed": "val/sparse", "qat": "val/qat"}
EVAL_METRICS = ("top1", "top5", "loss")


def step_row(
    *,
    loss: float,
    top1: float,
    lr: float,
    weight_decay: float,
    img_per_s: float,
    phase: int,
    phase_name: str,
    target_sparsity: float,
    epoch: float,
) -> Dict[str, Any]:
    return {
        TRAIN_LOSS: loss,
        TRAIN_TOP1: top1,
        IMG_PER_S: img_per_s,
        LR: lr,
        WEIGHT_DECAY: weight_decay,
        PHASE: phase,
        PHASE_NAME: phase_name,
        TARGET_SPARSITY: target_sparsity,
        EPOCH: epoch,
    }


def eval_row(metrics: Mapping[str, float], phase_name: str, epoch: float) -> Dict[str, float]:
    prefix = EVAL_PREFIX[phase_name]
    row = {f"{prefix}/{name}": float(metrics[name]) for name in EVAL_METRICS}
    row[EPOCH] = epoch
    return row
