"""Matplotlib figures: the plan (lr, sparsity, phases) and phase-shaded training curves."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Dict, Iterable, List, Optional, Sequence, Tuple

import matplotlib

matplotlib.use("Agg")  # files only; compute nodes have no display
import matplotlib.pyplot as plt  # noqa: E402

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from acdc_exp.plan import Plan
    from acdc_exp.records import MaskUpdate

PHASE_COLOURS = {"dense": "#dbeafe", "compressed": "#fde2e2", "qat": "#e9d5ff"}


def shade_phases(ax: Axes, intervals: Iterable[Tuple[float, float, str]]) -> None:
    seen = set()
    for start, end, name in intervals:
        ax.axvspan(start, end, color=PHASE_COLOURS.get(name, "#eeeeee"), alpha=0.7, lw=0, label=None if name in seen else name)
        seen.add(name)


def plot_schedule(plan: Plan, path: str | Path) -> Path:
    """lr and target sparsity per epoch over shaded phases (``acdc-schedule schedule.plot=PNG``)."""
    rows = plan.trace()
    epochs = [r["epoch"] for r in rows]
    fig, ax = plt.subplots(figsize=(10, 4))
    shade_phases(ax, plan.phase_intervals())
    ax.plot(epochs, [r["lr"] for r in rows], color="black", lw=1.2, label="lr")
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate")
    ax2 = ax.twinx()
    ax2.plot(epochs, [r["sparsity"] for r in rows], color="#b91c1c", lw=1.0, ls="--", label="target sparsity")
    ax2.set_ylabel("target sparsity")
    ax2.set_ylim(0, 1.02)
    updates = [r["epoch"] for r in rows if r["update_masks"]]
    for u in updates:
        ax.axvline(u, color="#b91c1c", lw=0.4, alpha=0.5)
    handles, labels = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(handles + h2, labels + l2, loc="upper right", fontsize=8)
    ax.set_title(f"plan: {plan.epochs} epochs, {len(updates)} mask updates")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_training_curve(
    history: Sequence[Tuple[float, str, float]],
    intervals: Sequence[Tuple[float, float, str]],
    path: str | Path,
    *,
    train_loss: Optional[List[Tuple[float, float]]] = None,
    title: str = "AC/DC run",
) -> Path:
    """Validation top-1 per phase (dense / sparse / qat as separate series) over shaded phases."""
    fig, ax = plt.subplots(figsize=(10, 4))
    shade_phases(ax, intervals)
    series: Dict[str, List[Tuple[float, float]]] = {}
    for epoch, phase, top1 in history:
        series.setdefault(phase, []).append((epoch, top1))
    markers = {"dense": "o", "compressed": "s", "qat": "^"}
    names = {"dense": "val top-1 (dense)", "compressed": "val top-1 (sparse)", "qat": "val top-1 (QAT)"}
    for phase, pts in series.items():
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=markers.get(phase, "."), ls="", label=names.get(phase, phase))
    ax.set_xlabel("epoch")
    ax.set_ylabel("top-1 (%)")
    if train_loss:
        ax2 = ax.twinx()
        ax2.plot([p[0] for p in train_loss], [p[1] for p in train_loss], color="grey", lw=0.8, label="train loss")
        ax2.set_ylabel("train loss")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_layer_sparsity(update: "MaskUpdate", path: Path) -> Path:
    """Horizontal bars: per-layer sparsity, and the per-layer fraction of the mask that
    changed since the previous compressed phase when known."""
    names = list(update.layer_sparsity)
    ys = list(range(len(names)))
    fig, ax = plt.subplots(figsize=(8, 1.6 + 0.28 * max(len(names), 1)), layout="constrained")
    ax.barh(ys, [update.layer_sparsity[n] for n in names], height=0.4, color="#b91c1c", label="sparsity")
    if update.layer_changed:
        ax.barh(
            [y + 0.4 for y in ys],
            [update.layer_changed.get(n, 0.0) for n in names],
            height=0.4,
            color="#2563eb",
            label="mask changed since last compressed phase",
        )
    ax.axvline(update.target_sparsity, color="black", lw=0.8, ls="--", label=f"target {update.target_sparsity:.3f}")
    ax.set_yticks([y + 0.2 for y in ys])
    ax.set_yticklabels(names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.0)
    ax.set_xlabel("fraction of weights")
    changed = "" if update.changed_fraction is None else f", {100 * update.changed_fraction:.2f}% changed"
    ax.set_title(f"masks at epoch {update.epoch:.2f}: global sparsity {update.global_sparsity:.4f}{changed}", fontsize=9)
    # below the axes: the bars reach the target line on the right, where a legend would sit
    fig.legend(loc="outside lower center", ncol=3, fontsize=7, frameon=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# --- the logger ----------------------------------------------------------------------------
