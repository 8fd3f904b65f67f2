"""Record the Fashion-MNIST study (docs/study_fashion_mnist.md) into bench/results/.

The study itself is the user's command, not this script:

    acdc-train -m sweep=fashion_mnist_study hydra/launcher=slurm_local

(re-launched with the same command after an interruption: finished runs are skipped). This
script collects its sweep dir with ``acdc-sweep-collect``'s code into
bench/results/study_fashion_mnist.{md,csv,png} and writes study_fashion_mnist.json: the
machine, the launch segments and their wall time, every run's summary figures, and the
AC/DC-vs-GMP goal per sparsity (AC/DC's mean at most 0.5 points below GMP's at 90% and 95%,
at most 1 point at 98%).

    python bench/study_fashion_mnist.py SWEEP_DIR [--segments study-times.log]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List

from acdc_exp.launch.collect import collect, find_summaries
from acdc_exp.machine import describe

RESULTS = Path(__file__).resolve().parent / "results"
NAME = "study_fashion_mnist"
# allowed shortfall of AC/DC's mean top-1 below GMP's, in points, per sparsity (issue 22)
GOAL = {0.9: 0.5, 0.95: 0.5, 0.98: 1.0}
KEEP = (
    "method",
    "sparsity_target",
    "seed",
    "final_top1",
    "dense_top1",
    "pair_dense_top1",
    "sparse_top1",
    "dense_epoch",
    "inference_flops_ratio",
    "training_flops_ratio",
    "wall_time_s",
    "resumed_at_steps",
)


def segments(log: Path) -> List[Dict[str, Any]]:
    """``segment start <iso> <commit>`` / ``segment end <iso> rc=N`` pairs of the launch log."""
    out: List[Dict[str, Any]] = []
    for line in log.read_text().splitlines():
        parts = line.split()
        if parts[:2] == ["segment", "start"]:
            out.append({"start": parts[2], "commit": parts[3] if len(parts) > 3 else None})
        elif parts[:2] == ["segment", "end"] and out:
            out[-1]["end"] = parts[2]
            start, end = (datetime.fromisoformat(out[-1][k].replace("Z", "+00:00")) for k in ("start", "end"))
            out[-1]["wall_min"] = round((end - start).total_seconds() / 60, 1)
    return out


def goal(runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    def mean(method: str, s: float) -> float:
        return statistics.fmean(r["final_top1"] for r in runs if r["method"] == method and round(r["sparsity_target"], 4) == s)

    out = {}
    for s, allowed in GOAL.items():
        gap = mean("gmp", s) - mean("acdc", s)
        out[f"{s:.2f}"] = {"gmp_minus_acdc": round(gap, 3), "allowed": allowed, "met": gap <= allowed}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep_dir", type=Path)
    ap.add_argument("--segments", type=Path, default=None, help="the launch log with segment start/end lines")
    args = ap.parse_args()
    table, csv_path, png = collect(args.sweep_dir, RESULTS)
    for path in (RESULTS / "sweep_summary.md", csv_path, png):
        shutil.move(path, RESULTS / f"{NAME}{path.suffix}")
    runs = [{k: s.get(k) for k in KEEP} for s in find_summaries(args.sweep_dir) if not s.get("interrupted")]
    runs.sort(key=lambda r: (r["method"], r["sparsity_target"], r["seed"]))
    record: Dict[str, Any] = {
        "bench": NAME,
        "command": "acdc-train -m sweep=fashion_mnist_study hydra/launcher=slurm_local",
        "runs": len(runs),
        "machine": describe(),
        "goal_acdc_vs_gmp": goal(runs),
        "per_run": runs,
    }
    if args.segments:
        record["segments"] = segments(args.segments)
        record["wall_min_total"] = round(sum(s.get("wall_min", 0.0) for s in record["segments"]), 1)
    (RESULTS / f"{NAME}.json").write_text(json.dumps(record, indent=2) + "\n")
    print(table)
    print(json.dumps({k: record[k] for k in ("goal_acdc_vs_gmp", "runs")} | {"wall_min_total": record.get("wall_min_total")}))


if __name__ == "__main__":
    main()
