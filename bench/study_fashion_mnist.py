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

from acdc_exp.machine import describe
from acdc_exp.runs.collect import collect, find_summaries

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
    """``segment start <iso> <commit>`` / ``segment end <iso> rc=N`` pairs of the launch log
    (bench/study_fashion_mnist_launch.sh); a segment without its end line stays open (no
    ``wall_min``) and makes the total None."""
    out: List[Dict[str, Any]] = []
    for line in log.read_text().splitlines():
        parts = line.split()
        if parts[:2] == ["segment", "start"]:
            out.append({"start": parts[2], "commit": parts[3] if len(parts) > 3 else None, "cpu": " ".join(parts[4:]) or None})
        elif parts[:2] == ["segment", "end"] and out:
            out[-1]["end"] = parts[2]
            start, end = (datetime.fromisoformat(out[-1][k].replace("Z", "+00:00")) for k in ("start", "end"))
            out[-1]["wall_min"] = round((end - start).total_seconds() / 60, 1)
    return out


def goal(runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Per sparsity where both methods have runs: GMP's mean top-1 minus AC/DC's, and the goal."""

    def top1(method: str, s: float) -> List[float]:
        return [r["final_top1"] for r in runs if r["method"] == method and round(r["sparsity_target"], 4) == s]

    out = {}
    for s, allowed in GOAL.items():
        gmp, acdc = top1("gmp", s), top1("acdc", s)
        if gmp and acdc:
            gap = statistics.fmean(gmp) - statistics.fmean(acdc)
            runs_each = [len(gmp), len(acdc)]
            out[f"{s:.2f}"] = {"gmp_minus_acdc": round(gap, 3), "allowed": allowed, "met": gap <= allowed, "runs": runs_each}
    return out


def _at(history: List[List[Any]], epoch: float) -> float:
    """Top-1 of an evaluation history at ``epoch``, linear between the evaluations around it."""
    points = sorted((float(e), float(t)) for e, _, t in history)
    if epoch <= points[0][0]:
        return points[0][1]
    for (e0, t0), (e1, t1) in zip(points, points[1:]):
        if e0 < e1 and e0 <= epoch <= e1:
            return t0 + (t1 - t0) * (epoch - e0) / (e1 - e0)
    return points[-1][1]


def dense_members(summaries: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Each AC/DC run's dense member against the dense baseline at the same epoch (mean over the
    baseline's seeds) and at the end: is the member behind because it is unfinished (the lr is
    still high where the last dense phase ends) or because it is a worse dense model?"""
    baselines = [s for s in summaries if s.get("sparsity_target") == 0.0 and not s.get("interrupted")]
    out = []
    for s in summaries:
        if s.get("pair_dense_top1") is None or not baselines:
            continue
        epoch = float(s["dense_epoch"])
        out.append(
            {
                "sparsity": s["sparsity_target"],
                "seed": s["seed"],
                "dense_epoch": epoch,
                "dense_member_top1": s["pair_dense_top1"],
                "sparse_top1": s["sparse_top1"],
                "baseline_top1_at_that_epoch": round(statistics.fmean(_at(b["history"], epoch) for b in baselines), 3),
                "baseline_top1_final": round(statistics.fmean(b["final_top1"] for b in baselines), 3),
            }
        )
    return sorted(out, key=lambda r: (r["sparsity"], r["seed"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep_dir", type=Path)
    ap.add_argument("--segments", type=Path, default=None, help="the launch log with segment start/end lines")
    args = ap.parse_args()
    table, csv_path, png = collect(args.sweep_dir, RESULTS)
    for path in (RESULTS / "sweep_summary.md", csv_path, png):
        shutil.move(path, RESULTS / f"{NAME}{path.suffix}")
    summaries = [s for s in find_summaries(args.sweep_dir) if not s.get("interrupted")]
    runs = [{k: s.get(k) for k in KEEP} for s in summaries]
    runs.sort(key=lambda r: (r["method"], r["sparsity_target"], r["seed"]))
    record: Dict[str, Any] = {
        "bench": NAME,
        "command": "acdc-train -m sweep=fashion_mnist_study hydra/launcher=slurm_local",
        "runs": len(runs),
        "machine": describe(),
        "goal_acdc_vs_gmp": goal(runs),
        "dense_members": dense_members(summaries),
        "per_run": runs,
    }
    if args.segments:
        record["segments"] = segments(args.segments)
        closed = all("wall_min" in seg for seg in record["segments"])
        record["wall_min_total"] = round(sum(seg["wall_min"] for seg in record["segments"]), 1) if closed else None
    (RESULTS / f"{NAME}.json").write_text(json.dumps(record, indent=2) + "\n")
    print(table)
    print(json.dumps({k: record[k] for k in ("goal_acdc_vs_gmp", "runs")} | {"wall_min_total": record.get("wall_min_total")}))


if __name__ == "__main__":
    main()
