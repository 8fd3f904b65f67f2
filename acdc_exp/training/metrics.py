"""Top-k accuracy and evaluation over a loader."""
from __future__ import annotations

from typing import Callable, Dict, Iterable, Optional, Tuple

import torch
from torch import nn


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, ks: Tuple[int, ...] = (1, 5)) -> Dict[int, int]:
    kmax = min(max(ks), logits.shape[1])
    pred = logits.topk(kmax, dim=1).indices
    hit = pred.eq(labels.view(-1, 1))
    return {k: int(hit[:, : min(k, kmax)].any(dim=1).sum().item()) for k in ks}


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[Tuple[torch.Tensor, torch.Tensor]],
    prepare: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device,
    *,
    amp: bool = False,
    limit: Optional[int] = None,
    distributed: bool = False,
    reduce_device: Optional[torch.device] = None,
) -> Dict[str, float]:
    """top1 / top5 (percent) and mean cross-entropy over the batches, in eval mode.
    ``distributed``: each rank saw a shard of the validation set; sum the counts over ranks."""
    was_training = model.training
    model.eval()
    n = loss_sum = 0
    correct = {1: 0, 5: 0}
    for i, (images, labels) in enumerate(batches):
        if limit is not None and i >= limit:
            break
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        with torch.autocast(device.type, enabled=amp and device.type == "cuda"):
            logits = model(prepare(images))
        loss_sum += nn.functional.cross_entropy(logits.float(), labels, reduction="sum").item()
        for k, c in topk_correct(logits, labels).items():
            correct[k] += c
        n += labels.numel()
    model.train(was_training)
    if distributed:
        # NCCL reduces only CUDA tensors, even when the model ran on CPU (int8 evaluation)
        totals = torch.tensor([n, loss_sum, correct[1], correct[5]], dtype=torch.float64, device=reduce_device or device)
        torch.distributed.all_reduce(totals)
        n, loss_sum, correct[1], correct[5] = int(totals[0]), float(totals[1]), int(totals[2]), int(totals[3])
    if n == 0:
        return {"top1": 0.0, "top5": 0.0, "loss": float("nan"), "samples": 0}
    return {"top1": 100.0 * correct[1] / n, "top5": 100.0 * correct[5] / n, "loss": loss_sum / n, "samples": n}
