"""BatchNorm statistics recomputed from recent training batches before an evaluation.

BatchNorm trains on batch statistics but evaluates with running averages (momentum 0.1 per
step). When a dense phase regrows the pruned weights, the channels' statistics move faster
than those averages follow, so an evaluation at the end of the phase's first epoch measures
stale statistics, not the model (digits at 98%: 28% with the running averages, 98.6% with
recomputed ones, same weights). ``trainer.bn_recalibration_batches`` = N > 0 recomputes
them, as a plain average over the N most recent training batches of the current epoch,
before every evaluation.
Weights are not touched; the running statistics are model state, so checkpoints and resumes
carry them.
"""

from __future__ import annotations

from collections import deque
from typing import Callable, Deque, Iterable, List

import torch
from torch import nn

BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


class RecentBatches:
    """The last ``size`` training batches (images as the loader gave them)."""

    def __init__(self, size: int) -> None:
        self.batches: Deque[torch.Tensor] = deque(maxlen=max(size, 1))
        self.size = size

    def add(self, images: torch.Tensor) -> None:
        if self.size > 0:
            # loaders may refill their buffers later (FFCV on a GPU): keep a private copy
            self.batches.append(images.detach().clone())

    def clear(self) -> None:
        """At every epoch start: a resume at an epoch boundary then sees the same batches."""
        self.batches.clear()

    def __len__(self) -> int:
        return len(self.batches) if self.size > 0 else 0


def _batchnorms(model: nn.Module) -> List[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, BATCHNORM) and m.track_running_stats]


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module,
    images: Iterable[torch.Tensor],
    prepare: Callable[[torch.Tensor], torch.Tensor],
    *,
    distributed: bool = False,
) -> int:
    """Replace every BatchNorm's running mean/var by their average over ``images`` (train-mode
    forwards, no gradients), then average them over ranks under torch.distributed. Returns
    the number of batches used; 0 leaves the model as it was."""
    bns = _batchnorms(model)
    batches = list(images)
    if not bns or not batches:
        return 0
    was_training = model.training
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the batches below
    model.train()
    try:
        for x in batches:
            model(prepare(x))
    finally:
        for bn, m in zip(bns, momenta):
            bn.momentum = m
        model.train(was_training)
    if distributed:
        world = torch.distributed.get_world_size()
        for bn in bns:
            for buf in (bn.running_mean, bn.running_var):
                torch.distributed.all_reduce(buf)
                buf.div_(world)
    return len(batches)
