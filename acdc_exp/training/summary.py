"""The summary of a finished run (``summary.json``, the W&B summary): pure functions of what
the run measured, so the trainer only gathers the pieces."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from acdc_exp.sparsity.methods.base import SparsityMethod


def parameter_counts(model: nn.Module, layer_sparsity: Mapping[str, float]) -> Dict[str, Any]:
    """All parameters, the nonzero ones, and the sparsity over the pruned layers."""
    named = dict(model.named_parameters())
    total = sum(p.numel() for p in named.values())
    with torch.no_grad():
        zeros = sum(int((p == 0).sum()) for p in named.values())
    pruned_total = sum(named[n].numel() for n in layer_sparsity)
    pruned_zeros = sum(layer_sparsity[n] * named[n].numel() for n in layer_sparsity)
    return {
        "params_total": total,
        "params_nonzero": total - zeros,
        "sparsity_pruned_layers": pruned_zeros / pruned_total if pruned_total else 0.0,
    }


def _top(metrics: Optional[Mapping[str, float]], key: str) -> Optional[float]:
    return metrics[key] if metrics else None


def phase_dips(history: Sequence[Sequence[Any]]) -> Dict[str, Optional[float]]:
    """How far validation top-1 falls inside phases, from the (epoch, phase, top1) history.

    ``dense_phase_dip``: over the dense phases that follow a compressed one, the largest
    (top-1 at the last evaluation before the phase) - (lowest top-1 evaluated in it).
    ``compressed_phase_drop``: over compressed phases, the largest (top-1 at the phase's first
    evaluation) - (lowest later top-1 in it): the noise of a phase at similar lr, without
    the pruning event itself. None when the history has no such phase."""
    runs: List[Tuple[str, List[float], Optional[Tuple[str, float]]]] = []  # (phase, top1s, eval before)
    before: Optional[Tuple[str, float]] = None
    for _, phase, top1 in history:
        if runs and runs[-1][0] == phase:
            runs[-1][1].append(float(top1))
        else:
            runs.append((phase, [float(top1)], before))
        before = (phase, float(top1))
    # a phase whose every evaluation is above the reference has no dip: 0, not a negative one
    dense = [max(0.0, prev[1] - min(t)) for phase, t, prev in runs if phase == "dense" and prev and prev[0] == "compressed"]
    comp = [max(0.0, t[0] - min(t[1:])) for phase, t, _ in runs if phase == "compressed" and len(t) > 1]
    return {"dense_phase_dip": max(dense) if dense else None, "compressed_phase_drop": max(comp) if comp else None}


def build_summary(
    cfg: Any,
    method: SparsityMethod,
    results: Any,
    *,
    steps: int,
    epochs: int,
    int8: Optional[Mapping[str, float]],
    **measured: Any,
) -> Dict[str, Any]:
    """``method``: the run's sparsity method; ``results``: the trainer's Results
    (final/dense/sparse/qat metrics, history); ``int8``: the int8 member's metrics;
    ``measured``: the rest, recorded as given (paths, wall time, parameter counts, loading,
    precision...)."""
    r = results
    summary: Dict[str, Any] = dict(
        experiment=cfg.experiment_name,
        method=method.name,
        method_label=method.label,
        mask_type=method.mask_type,
        seed=int(cfg.seed),
        epochs=epochs,
        steps=steps,
        final_phase=r.final_phase,
        final_top1=r.final["top1"],
        final_top5=r.final["top5"],
        dense_top1=_top(r.dense, "top1"),
        dense_top5=_top(r.dense, "top5"),
        dense_epoch=r.dense_epoch,
        sparse_top1=_top(r.sparse, "top1"),
        sparse_top5=_top(r.sparse, "top5"),
        qat_top1=_top(r.qat, "top1"),
        sparse_int8_top1=_top(int8, "top1"),
        sparsity_target=method.target_sparsity,
        resumed_at_steps=list(r.resumed_at_steps),
        history=[list(h) for h in r.history],
        **phase_dips(r.history),
    )
    summary.update(measured)
    if summary["dense_top1"] is not None and summary["sparse_top1"] is not None:
        summary["dense_sparse_gap"] = summary["dense_top1"] - summary["sparse_top1"]
    return summary
