"""Collect a multirun sweep: every run's summary.json -> one table and one plot.

Runs are grouped by (method, mask type, sparsity); seeds are averaged (mean and standard
deviation), so a seeds sweep reads as error bars.
"""

from __future__ import annotations

import csv
import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from acdc_exp.errors import DataError

COLUMNS = (
    "method",
    "mask_type",
    "sparsity",
    "runs",
    "dense_top1",
    "dense_top1_std",
    "sparse_top1",
    "sparse_top1_std",
    "final_top1",
    "final_top1_std",
    "gap",
)


@dataclass
class Row:
    method: str
    mask_type: str
    sparsity: float
    values: Dict[str, List[float]]

    def mean_std(self, key: str) -> Tuple[Optional[float], Optional[float]]:
        vals = self.values.get(key, [])
        if not vals:
            return None, None
        return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def find_summaries(sweep_dir: Path) -> List[dict]:
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise DataError(f"sweep dir {str(sweep_dir)!r} does not exist")
    out = []
    for path in sorted(sweep_dir.rglob("summary.json")):
        try:
            out.append(json.loads(path.read_text()))
        except json.JSONDecodeError:
            continue  # a run still writing; atomic writes make this rare
    if not out:
        raise DataError(f"no summary.json under {str(sweep_dir)!r}; has any run of the sweep finished?")
    return out


def aggregate(summaries: List[dict]) -> List[Row]:
    rows: Dict[Tuple[str, str, float], Row] = {}
    for s in summaries:
        if s.get("interrupted"):
            continue
        method = s.get("method", "?")
        sparsity = float(s.get("sparsity_target", 0.0)) if method != "dense" else 0.0
        key = (method, s.get("mask_type", "?") if method != "dense" else "-", round(sparsity, 6))
        row = rows.setdefault(key, Row(key[0], key[1], key[2], {}))
        for k in ("dense_top1", "sparse_top1", "final_top1", "sparse_int8_top1"):
            if s.get(k) is not None:
                row.values.setdefault(k, []).append(float(s[k]))
    return sorted(rows.values(), key=lambda r: (r.method, r.mask_type, r.sparsity))


def _fmt(mean: Optional[float], std: Optional[float]) -> str:
    if mean is None:
        return "-"
    return f"{mean:.2f} ± {std:.2f}" if std else f"{mean:.2f}"


def markdown_table(rows: List[Row]) -> str:
    lines = [
        "| method | mask | sparsity | runs | dense top-1 | sparse top-1 | final top-1 | gap (dense - sparse) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        d, s = r.mean_std("dense_top1"), r.mean_std("sparse_top1")
        gap = f"{d[0] - s[0]:.2f}" if d[0] is not None and s[0] is not None else "-"
        runs = max((len(v) for v in r.values.values()), default=0)
        lines.append(
            f"| {r.method} | {r.mask_type} | {r.sparsity:.2f} | {runs} | {_fmt(*d)} | {_fmt(*s)} | "
            f"{_fmt(*r.mean_std('final_top1'))} | {gap} |"
        )
    return "\n".join(lines)


def write_csv(rows: List[Row], path: Path) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for r in rows:
            d, s, f = r.mean_std("dense_top1"), r.mean_std("sparse_top1"), r.mean_std("final_top1")
            gap = d[0] - s[0] if d[0] is not None and s[0] is not None else None
            runs = max((len(v) for v in r.values.values()), default=0)
            w.writerow([r.method, r.mask_type, r.sparsity, runs, d[0], d[1], s[0], s[1], f[0], f[1], gap])


def plot(rows: List[Row], path: Path, title: str) -> Path:
    import matplotlib  # matplotlib only when a plot is asked for

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # matplotlib only when a plot is asked for

    fig, ax = plt.subplots(figsize=(7, 4))
    by_method: Dict[str, List[Row]] = {}
    for r in rows:
        by_method.setdefault(f"{r.method} ({r.mask_type})" if r.method != "dense" else "dense", []).append(r)
    for label, rs in by_method.items():
        if label == "dense":
            m, sd = rs[0].mean_std("final_top1")
            if m is not None:
                ax.axhspan(m - (sd or 0), m + (sd or 0), color="grey", alpha=0.25)
                ax.axhline(m, color="grey", lw=1, label="dense baseline")
            continue
        xs = [r.sparsity for r in rs]
        sparse = [r.mean_std("sparse_top1") if r.values.get("sparse_top1") else r.mean_std("final_top1") for r in rs]
        ax.errorbar(xs, [m for m, _ in sparse], yerr=[sd for _, sd in sparse], marker="o", capsize=3, label=f"{label} sparse")
        dense = [r.mean_std("dense_top1") for r in rs]
        if all(m is not None for m, _ in dense) and label.startswith("acdc"):
            ax.errorbar(
                xs,
                [m for m, _ in dense],
                yerr=[sd for _, sd in dense],
                marker="s",
                ls="--",
                capsize=3,
                label=f"{label} dense member",
            )
    ax.set_xlabel("target sparsity")
    ax.set_ylabel("top-1 (%)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def collect(sweep_dir: Path, out_dir: Optional[Path] = None) -> Tuple[str, Path, Path]:
    """Write ``sweep_summary.md``, ``.csv`` and ``.png`` into ``out_dir`` (default: the sweep dir)."""
    sweep_dir = Path(sweep_dir)
    rows = aggregate(find_summaries(sweep_dir))
    out_dir = Path(out_dir) if out_dir else sweep_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    table = markdown_table(rows)
    (out_dir / "sweep_summary.md").write_text(table + "\n")
    write_csv(rows, out_dir / "sweep_summary.csv")
    png = plot(rows, out_dir / "sweep_summary.png", title=f"sweep {sweep_dir.name}")
    return table, out_dir / "sweep_summary.csv", png
