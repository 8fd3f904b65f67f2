"""The int8 member at the end of a QAT run: convert, evaluate on the CPU, save."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, Optional, Tuple

import torch
from torch import nn

from acdc_exp.training import checkpoint as ckpt
from acdc_exp.training.metrics import evaluate

if TYPE_CHECKING:
    from acdc_exp.quantization.base import NoQuantization
    from acdc_exp.quantization.qat import QATController

SATURATION_WARNING = (
    "[int8] warning: this CPU has no VNNI/AMX and quantization.reduce_range=false: its int8 "
    "kernels saturate, so sparse_int8_top1 here understates the model (see README, QAT)"
)


def int8_member(
    quantizer: NoQuantization | QATController,
    model: nn.Module,
    batches: Iterable,
    prepare: Callable[[torch.Tensor], torch.Tensor],
    *,
    limit: Optional[int],
    distributed: bool,
    reduce_device: torch.device,
    save_dir: Optional[Path],
    extra: Dict[str, Any],
    message: Callable[[str], None],
) -> Tuple[Optional[Dict[str, float]], Optional[Path]]:
    """(metrics, saved path) of ``quantizer``'s int8 conversion of ``model``; (None, None)
    when QAT never started. Every rank evaluates its shard (the counts are summed); the file
    is written only where ``save_dir`` is given (rank 0), with ``extra`` beside the state."""
    if not quantizer.prepared:
        return None, None
    if not quantizer.int8_exact_on_this_cpu():
        message(SATURATION_WARNING)
    int8 = quantizer.convert(model)
    cpu = torch.device("cpu")
    metrics = evaluate(
        int8, batches, lambda x: prepare(x).to(cpu), cpu, limit=limit, distributed=distributed, reduce_device=reduce_device
    )
    if save_dir is None:
        return metrics, None
    payload = {"model": int8.state_dict(), "metrics": metrics, "quantizer": quantizer.state_dict(), **extra}
    return metrics, ckpt.save_atomic(payload, save_dir / ckpt.MEMBER_FILES["int8"])
