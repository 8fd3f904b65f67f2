"""The int8 member at the end of a QAT run: convert, evaluate on the CPU, save."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, Optional, Tuple

import torch
from torch import nn

from acdc_exp import run_layout as layout
from acdc_exp.training import checkpoint as ckpt
from acdc_exp.training.metrics import evaluate

if TYPE_CHECKING:
    from acdc_exp.quantization.base import NoQuantization
    from acdc_exp.quantization.qat import QATController


def saturation_note(backend: str, engine: Optional[str]) -> str:
    """Why the int8 model is not scored with ``backend`` (the README's QAT section has more)."""
    why = (
        f"[int8] this CPU's {backend} int8 kernels (no VNNI/AMX in use) saturate on 8-bit activations "
        "(quantization.reduce_range=false)"
    )
    if engine is None:
        return f"{why}, and this torch has no qnnpack engine: sparse_int8_top1 is not reported"
    return f"{why}: sparse_int8_top1 is scored with the {engine} engine (int32 sums), exact but slower"


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
    backend_exact: Optional[bool] = None,
    stop: Optional[Callable[[], bool]] = None,
) -> Tuple[Optional[Dict[str, Any]], Optional[Path]]:
    """(metrics, saved path) of ``quantizer``'s int8 conversion of ``model``; (None, None)
    when QAT never started. The model is scored with ``quantizer.int8_engine()``, an engine
    whose kernels cannot saturate here, named in the metrics as ``int8_engine``; where there
    is none the metrics are None (no inexact score) and the model is still saved.
    ``backend_exact``: the backend's exactness as all ranks agreed it (one engine for every
    shard). Every rank evaluates its shard (the counts are summed; ``stop`` ends it early with
    EvaluationStopped); the file is written only where ``save_dir`` is given (rank 0), with
    ``extra`` beside the state."""
    if not quantizer.prepared:
        return None, None
    engine = quantizer.int8_engine(backend_exact)
    if engine != quantizer.backend:
        message(saturation_note(quantizer.backend, engine))
    int8 = quantizer.convert(model, engine)
    metrics: Optional[Dict[str, Any]] = None
    if engine is not None:
        cpu = torch.device("cpu")
        metrics = evaluate(
            int8,
            batches,
            lambda x: prepare(x).to(cpu),
            cpu,
            limit=limit,
            distributed=distributed,
            reduce_device=reduce_device,
            stop=stop,
        )
        metrics["int8_engine"] = engine
    if save_dir is None:
        return metrics, None
    payload = {
        "model": int8.state_dict(),
        "metrics": metrics,
        "int8_engine": engine,
        "quantizer": quantizer.state_dict(),
        **extra,
    }
    return metrics, ckpt.save_atomic(payload, save_dir / layout.MEMBER_FILES["int8"])
