"""Top-k accuracy and evaluation over a loader."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Callable, Dict, Iterable, List, Optional, Tuple

import torch
from torch import nn

if TYPE_CHECKING:
    from acdc_exp.training.precision import Precision


class EvaluationStopped(Exception):
    """An evaluation given ``stop`` ended early on request (a preemption signal on some rank)."""


def topk_hits(logits: torch.Tensor, labels: torch.Tensor, ks: Tuple[int, ...] = (1, 5)) -> torch.Tensor:
    """How many samples have their label among the top k logits, for each k, as one tensor on
    the logits' device (no host sync)."""
    kmax = min(max(ks), logits.shape[1])
    pred = logits.topk(kmax, dim=1).indices
    hit = pred.eq(labels.view(-1, 1))
    return torch.stack([hit[:, : min(k, kmax)].any(dim=1).sum() for k in ks])


def _pause_observers(model: nn.Module) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """Switch off every enabled observer (torch.ao FakeQuantize's ``observer_enabled`` flag);
    returns what to restore."""
    saved = []
    for m in model.modules():
        flag = getattr(m, "observer_enabled", None)
        if isinstance(flag, torch.Tensor):
            saved.append((flag, flag.clone()))
            flag.zero_()
    return saved


def _restore_observers(saved: List[Tuple[torch.Tensor, torch.Tensor]]) -> None:
    for flag, value in saved:
        flag.copy_(value)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[Tuple[torch.Tensor, torch.Tensor]],
    prepare: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device,
    *,
    precision: Optional["Precision"] = None,
    limit: Optional[int] = None,
    distributed: bool = False,
    reduce_device: Optional[torch.device] = None,
    stop: Optional[Callable[[], bool]] = None,
) -> Dict[str, float]:
    """top1 / top5 (percent) and mean cross-entropy over the batches, in eval mode, under
    ``precision``'s autocast when given. Changes no model state: fake-quantization observers
    (which observe in eval mode too) are paused and restored.
    ``distributed``: each rank saw a shard of the validation set; sum the counts over ranks.
    ``stop``: checked before each batch (a local flag, no collective); when it is set on any
    rank, every rank raises EvaluationStopped after the one final all-reduce, which carries it."""
    was_training = model.training
    model.eval()
    paused = _pause_observers(model)
    # n, loss sum, top-1 hits, top-5 hits, stopped ranks, summed on the device: one host sync at the end
    totals = torch.zeros(5, dtype=torch.float64, device=reduce_device if distributed and reduce_device else device)
    # asynchronous only host -> GPU: a GPU -> host copy must finish before the CPU reads it
    non_blocking = device.type == "cuda"
    try:
        for i, (images, labels) in enumerate(batches):
            if limit is not None and i >= limit:
                break
            if stop is not None and stop():
                totals[4] += 1
                break
            images, labels = images.to(device, non_blocking=non_blocking), labels.to(device, non_blocking=non_blocking)
            with precision.autocast() if precision is not None else contextlib.nullcontext():
                logits = model(prepare(images))
            loss = nn.functional.cross_entropy(logits.float(), labels, reduction="sum")
            totals[0] += labels.numel()
            totals[1] += loss.to(totals)
            totals[2:4] += topk_hits(logits, labels, (1, 5)).to(totals)
    finally:
        model.train(was_training)
        _restore_observers(paused)
    if distributed:
        # NCCL reduces only CUDA tensors, even when the model ran on CPU (int8 evaluation)
        torch.distributed.all_reduce(totals)
    n, loss_sum, top1, top5, stopped = totals.tolist()
    if stopped:
        raise EvaluationStopped(f"evaluation stopped on request after {int(n)} samples")
    if n == 0:
        return {"top1": 0.0, "top5": 0.0, "loss": float("nan"), "samples": 0}
    return {"top1": 100.0 * top1 / n, "top5": 100.0 * top5 / n, "loss": loss_sum / n, "samples": int(n)}
