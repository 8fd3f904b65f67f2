"""Record the Fashion-MNIST study (docs/study_fashion_mnist.md) into bench/results/.

The study itself is the user's command, not this script:

    acdc-train -m sweep=fashion_mnist_study hydra/launcher=slurm_local

(re-launched with the same command after an interruption: finished runs are skipped). This
script collects its sweep dirs with ``acdc-sweep-collect``'s code into
bench/results/study_fashion_mnist.{md,csv,png} and writes study_fashion_mnist.json: the
machine, the launch segments and their wall time, every run's summary figures, the
AC/DC-vs-GMP goal per sparsity (AC/DC's mean at most 0.5 points below GMP's at 90% and 95%,
at most 1 point at 98%), and where each RigL layout stands against GMP and AC/DC. Several
sweep dirs are one study when its cells ran as separate sweeps (RigL's, added later).

    python bench/study_fashion_mnist.py SWEEP_DIR [SWEEP_DIR ...] [--segments LOG ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List, Optional

from acdc_exp.machine import describe
from acdc_exp.runs.collect import aggregate, find_summaries, markdown_table, plot, write_csv

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


def _time(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def segments(log: Path) -> List[Dict[str, Any]]:
    """``segment start [label] <iso> <commit>`` / ``segment end [label] <iso> rc=N`` pairs of a
    launch log (bench/study_fashion_mnist_launch.sh; RigL's two sweeps side by side carry their
    label); a segment without its end line stays open (no ``wall_min``)."""
    out: List[Dict[str, Any]] = []
    for line in log.read_text().splitlines():
        parts = line.split()
        if parts[:2] not in (["segment", "start"], ["segment", "end"]):
            continue
        label = parts.pop(2) if len(parts) > 2 and not parts[2][:1].isdigit() else None
        if parts[1] == "start":
            out.append({"label": label, "start": parts[2], "commit": parts[3] if len(parts) > 3 else None})
            continue
        open_ = [seg for seg in out if seg["label"] == label and "end" not in seg]
        if open_:
            open_[-1]["end"] = parts[2]
            open_[-1]["wall_min"] = round((_time(parts[2]) - _time(open_[-1]["start"])).total_seconds() / 60, 1)
    return out


def wall_minutes(segs: List[Dict[str, Any]]) -> Optional[float]:
    """Minutes the machine spent on the study: the union of the segments (side-by-side sweeps
    count once); None while one is open."""
    if not all("end" in seg for seg in segs):
        return None
    spans = sorted((_time(seg["start"]), _time(seg["end"])) for seg in segs)
    total, (lo, hi) = 0.0, spans[0]
    for a, b in spans[1:]:
        if a > hi:
            total, lo, hi = total + (hi - lo).total_seconds(), a, b
        else:
            hi = max(hi, b)
    return round((total + (hi - lo).total_seconds()) / 60, 1)


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


def versus(runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Per sparsity: each RigL layout's mean top-1 minus GMP's and minus AC/DC's (points)."""
    out: Dict[str, Any] = {}
    for s in GOAL:
        at = {}
        for r in runs:
            if round(r["sparsity_target"] or 0.0, 4) == s:
                at.setdefault(r["method_label"] or r["method"], []).append(r["final_top1"])
        means = {m: statistics.fmean(v) for m, v in at.items()}
        for label in sorted(m for m in means if m.startswith("rigl")):
            for other in ("gmp", "acdc"):
                if other in means:
                    out.setdefault(f"{s:.2f}", {})[f"{label}_minus_{other}"] = round(means[label] - means[other], 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep_dirs", type=Path, nargs="+")
    ap.add_argument("--segments", type=Path, nargs="*", default=[], help="launch logs with segment start/end lines")
    args = ap.parse_args()
    summaries = [s for d in args.sweep_dirs for s in find_summaries(d) if not s.get("interrupted")]
    rows = aggregate(summaries)
    table = markdown_table(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{NAME}.md").write_text(table + "\n")
    write_csv(rows, RESULTS / f"{NAME}.csv")
    plot(rows, RESULTS / f"{NAME}.png", title="Fashion-MNIST, ResNet-8 (w16), 12 epochs: mean ± std over 3 seeds")
    runs = [{k: s.get(k) for k in (*KEEP, "method_label")} for s in summaries]
    runs.sort(key=lambda r: (r["method_label"] or r["method"], r["sparsity_target"], r["seed"]))
    record: Dict[str, Any] = {
        "bench": NAME,
        "command": "acdc-train -m sweep=fashion_mnist_study hydra/launcher=slurm_local",
        "sweep_dirs": [str(d) for d in args.sweep_dirs],
        "runs": len(runs),
        "machine": describe(),
        "goal_acdc_vs_gmp": goal(runs),
        "rigl_versus": versus(runs),
        "dense_members": dense_members(summaries),
        "per_run": runs,
    }
    if args.segments:
        record["segments"] = [seg for log in args.segments for seg in segments(log)]
        record["wall_min_total"] = wall_minutes(record["segments"])
    (RESULTS / f"{NAME}.json").write_text(json.dumps(record, indent=2) + "\n")
    print(table)
    summary = {k: record[k] for k in ("goal_acdc_vs_gmp", "rigl_versus", "runs")}
    print(json.dumps(summary | {"wall_min_total": record.get("wall_min_total")}))


if __name__ == "__main__":
    main()
