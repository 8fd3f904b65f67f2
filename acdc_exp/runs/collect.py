"""Collect a multirun sweep: every run's summary.json -> one table and one plot.

Runs are grouped by (method, mask type, sparsity), the method as its label tells it (RigL's
``rigl-erk`` and ``rigl-uniform`` apart); seeds are averaged (mean and standard deviation), so
a seeds sweep reads as error bars.
"""

from __future__ import annotations

import csv
import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from acdc_exp import run_layout as layout
from acdc_exp.errors import DataError

# (summary key, table header): averaged over a cell's seeds (mean and standard deviation)
MEASURES = (
    ("final_top1", "top-1"),
    ("pair_dense_top1", "dense member top-1"),
    ("sparse_top1", "sparse member top-1"),
    ("sparse_int8_top1", "int8 top-1"),
    ("inference_flops_ratio", "inference FLOPs (x dense)"),
    ("training_flops_ratio", "training FLOPs (x dense)"),
    ("wall_time_s", "wall time (s)"),
)
COLUMNS = ("method", "mask_type", "sparsity", "seeds", "runs") + tuple(
    f"{key}{suffix}" for key, _ in MEASURES for suffix in ("", "_std")
)


@dataclass
class Row:
    method: str
    mask_type: str
    sparsity: float
    values: Dict[str, List[float]]
    seeds: List[int]

    def mean_std(self, key: str) -> Tuple[Optional[float], Optional[float]]:
        vals = self.values.get(key, [])
        if not vals:
            return None, None
        return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)

    @property
    def runs(self) -> int:
        return len(self.seeds)


def find_summaries(sweep_dir: Path) -> List[dict]:
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise DataError(f"sweep dir {str(sweep_dir)!r} does not exist")
    out = []
    for path in sorted(sweep_dir.rglob(layout.SUMMARY)):
        try:
            out.append(json.loads(path.read_text()))
        except json.JSONDecodeError:
            continue  # not a summary: runs write theirs atomically
    if not out:
        raise DataError(f"no summary.json under {str(sweep_dir)!r}; has any run of the sweep finished?")
    return out


def aggregate(summaries: List[dict]) -> List[Row]:
    """One row per (method, mask type, sparsity), its seeds' values listed per measure."""
    rows: Dict[Tuple[str, str, float], Row] = {}
    for s in summaries:
        if s.get("interrupted"):
            continue
        method = s.get("method_label") or s.get("method", "?")  # RigL's layer distributions apart
        sparsity = float(s.get("sparsity_target", 0.0))
        key = (method, s.get("mask_type", "?") if sparsity else "-", round(sparsity, 6))
        row = rows.setdefault(key, Row(key[0], key[1], key[2], {}, []))
        row.seeds.append(int(s.get("seed", -1)))
        for k, _ in MEASURES:
            if s.get(k) is not None:
                row.values.setdefault(k, []).append(float(s[k]))
    return sorted(rows.values(), key=lambda r: (r.sparsity > 0, r.method, r.mask_type, r.sparsity))


def _fmt(mean: Optional[float], std: Optional[float], digits: int = 2) -> str:
    if mean is None:
        return "-"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if std else f"{mean:.{digits}f}"


def markdown_table(rows: List[Row]) -> str:
    """The table a paper needs: top-1 mean ± std over seeds, AC/DC's dense member, FLOPs."""
    header = ["method", "mask", "sparsity", "seeds"] + [title for _, title in MEASURES]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for r in rows:
        cells = [r.method, r.mask_type, f"{r.sparsity:.2f}", ",".join(str(s) for s in sorted(r.seeds))]
        for key, _ in MEASURES:
            digits = 3 if key.endswith("ratio") else (0 if key == "wall_time_s" else 2)
            cells.append(_fmt(*r.mean_std(key), digits=digits))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_csv(rows: List[Row], path: Path) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for r in rows:
            values: List[object] = [r.method, r.mask_type, r.sparsity, " ".join(str(s) for s in sorted(r.seeds)), r.runs]
            for key, _ in MEASURES:
                values.extend(r.mean_std(key))
            w.writerow(values)


def plot(rows: List[Row], path: Path, title: str) -> Path:
    import matplotlib  # matplotlib only when a plot is asked for

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # matplotlib only when a plot is asked for

    fig, ax = plt.subplots(figsize=(7, 4))
    by_method: Dict[str, List[Row]] = {}
    for r in rows:
        by_method.setdefault(f"{r.method} ({r.mask_type})" if r.sparsity else r.method, []).append(r)
    for label, rs in by_method.items():
        if all(r.sparsity == 0 for r in rs):  # the dense baseline: a line with its band
            m, sd = rs[0].mean_std("final_top1")
            if m is not None:
                ax.axhspan(m - (sd or 0), m + (sd or 0), color="grey", alpha=0.25)
                ax.axhline(m, color="grey", lw=1, label=f"{label} baseline")
            continue
        xs = [r.sparsity for r in rs]
        sparse = [r.mean_std("sparse_top1") if r.values.get("sparse_top1") else r.mean_std("final_top1") for r in rs]
        ax.errorbar(xs, [m for m, _ in sparse], yerr=[sd for _, sd in sparse], marker="o", capsize=3, label=f"{label} sparse")
        dense = [r.mean_std("pair_dense_top1") for r in rs]
        if all(m is not None for m, _ in dense):
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
    summaries = find_summaries(sweep_dir)
    rows = aggregate(summaries)
    out_dir = Path(out_dir) if out_dir else sweep_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    table = markdown_table(rows)
    (out_dir / "sweep_summary.md").write_text(table + "\n")
    write_csv(rows, out_dir / "sweep_summary.csv")
    experiments = sorted({str(s.get("experiment")) for s in summaries if s.get("experiment")})
    title = f"{' + '.join(experiments) + ': ' if experiments else ''}sweep {sweep_dir.name}, mean ± std over seeds"
    png = plot(rows, out_dir / "sweep_summary.png", title=title)
    return table, out_dir / "sweep_summary.csv", png
