"""Ablations of the Fashion-MNIST study on the validation split (docs/study_fashion_mnist.md).

Why AC/DC trails GMP: each variant is the study's experiment with one AC/DC choice changed,
trained by the real CLI on the val split (the 5,000 held-out training images; the test split
stays untouched), one torch thread per run, two runs at a time:

    acdc-train experiment=fashion_mnist_study data.eval_split=val sparsity.sparsity=<s>
               seed=<k> <variant's overrides> logger=none hydra.run.dir=<cache>/<variant>_s<s>_seed<k>

The reference rows are the study's own GMP and AC/DC runs, scored on val by ``acdc-eval``
(the eval split does not change what a run trains, so this is the same model a val run of
the defaults would end with). A run whose summary.json exists is not trained again.

    python bench/study_fashion_mnist_ablations.py STUDY_SWEEP_DIR --runs acdc_end_8:0.95:0 ...
        [--jobs 2] [--cache bench/results/study_runs/fashion_mnist_ablations]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import re
import statistics
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Tuple

from acdc_exp.machine import describe
from acdc_exp.runs.collect import find_summaries

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
NAME = "study_fashion_mnist_ablations"
BIN = ROOT / ".venv" / "bin"
# name -> (what it changes, overrides); the study's 12 epochs: AC/DC dense to 0.8, phases of
# 1.2 epochs, the phase from 9.2 compressed to the end; GMP prunes 0.8 -> 8.0, then fine-tunes
VARIANTS: Dict[str, Tuple[str, List[str]]] = {
    "acdc_end_8": (
        "end_epoch 9.2: the phases 1.2 epochs earlier (compressed from 0.8), the last compressed one"
        " from 8.0 (GMP's fine-tuning length) instead of 9.2",
        ["sparsity=acdc", "sparsity.end_epoch=9.2"],
    ),
    "acdc_paper": ("the paper's shape: fewer phases, last compressed phase from epoch 6.4", ["sparsity=acdc_paper"]),
    "acdc_phases_2.4": (
        "phases of 2.4 epochs instead of 1.2 (two compressed phases: 3.2-5.6 and 8.0 to the end)",
        ["sparsity=acdc", "sparsity.update_frequency=2.4"],
    ),
    "acdc_no_ramp": ("no lr ramp at dense-phase starts (SparseML)", ["sparsity=acdc", "sparsity.dense_phase_warmup_epochs=0"]),
}
TOP1 = re.compile(r"top-1 ([0-9.]+)%")


def train(variant: str, sparsity: float, seed: int, cache: Path) -> Dict[str, Any]:
    run_dir = cache / f"{variant}_s{sparsity:g}_seed{seed}"
    summary = run_dir / "summary.json"
    cmd = [
        str(BIN / "acdc-train"),
        "experiment=fashion_mnist_study",
        "data.eval_split=val",
        f"sparsity.sparsity={sparsity:g}",
        f"seed={seed}",
        *VARIANTS[variant][1],
        "logger=none",
        f"hydra.run.dir={run_dir}",
    ]
    if not summary.exists():
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if proc.returncode != 0 or not summary.exists():
            raise SystemExit(f"{run_dir.name} failed (exit {proc.returncode}): {(proc.stdout + proc.stderr)[-800:]}")
    s = json.loads(summary.read_text())
    return {
        "variant": variant,
        "sparsity": sparsity,
        "seed": seed,
        "val_top1": s["final_top1"],
        "dense_member_val_top1": s.get("pair_dense_top1"),
        "dense_epoch": s.get("dense_epoch"),
        "training_flops_ratio": s["training_flops_ratio"],
        "command": " ".join(cmd[1:]),
    }


def cached_runs(cache: Path) -> List[Tuple[str, float, int]]:
    """(variant, sparsity, seed) of every finished run in the cache."""
    out = []
    for summary in sorted(cache.glob("*_s*_seed*/summary.json")):
        m = re.fullmatch(r"(.+)_s([0-9.]+)_seed([0-9]+)", summary.parent.name)
        if m and m.group(1) in VARIANTS:
            out.append((m.group(1), float(m.group(2)), int(m.group(3))))
    return out


def score_on_val(run_dir: str, member: str) -> float:
    """``acdc-eval`` of a study run's member on the val split."""
    cmd = [str(BIN / "acdc-eval"), f"checkpoint={run_dir}", f"member={member}", "data.eval_split=val"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=True).stdout
    return float(TOP1.search(out).group(1))


def study_on_val(sweep_dir: Path, sparsities: List[float], cache: Path) -> List[Dict[str, Any]]:
    """The study's dense runs and its GMP and AC/DC runs at ``sparsities`` scored on val, kept in
    <cache>/study_on_val.json so that a second invocation does not score them again."""
    saved = cache / "study_on_val.json"
    rows = json.loads(saved.read_text()) if saved.exists() else []
    done = {(r["variant"], r["sparsity"], r["seed"]) for r in rows}
    for s in find_summaries(sweep_dir):
        if s["sparsity_target"] == 0.0 or (s["method"] in ("gmp", "acdc") and round(s["sparsity_target"], 4) in sparsities):
            if (f"study {s['method']}", round(s["sparsity_target"], 4), s["seed"]) in done:
                continue
            pair = s.get("pair_dense_top1") is not None
            rows.append(
                {
                    "variant": f"study {s['method']}",
                    "sparsity": round(s["sparsity_target"], 4),
                    "seed": s["seed"],
                    "val_top1": score_on_val(s["run_dir"], "final"),
                    "dense_member_val_top1": score_on_val(s["run_dir"], "dense") if pair else None,
                    "dense_epoch": s.get("dense_epoch") if pair else None,
                    "training_flops_ratio": s["training_flops_ratio"],
                    "test_top1": s["final_top1"],
                }
            )
    cache.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(rows, indent=2) + "\n")
    return [r for r in rows if r["sparsity"] == 0.0 or r["sparsity"] in sparsities]


def _ms(values: List[float]) -> str:
    if not values:
        return "-"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.2f} ± {std:.2f}"


def markdown(rows: List[Dict[str, Any]], meta: Dict[str, Any]) -> str:
    lines = [
        f"# Fashion-MNIST study: ablations on the val split ({meta['date_utc'][:10]})",
        "",
        "The study's experiment (ResNet-8 width 16, 12 epochs) with one AC/DC choice changed; val top-1 on the "
        "5,000 held-out training images (one image = 0.02 points), mean ± sample std over the seeds listed. "
        f"Machine: {meta['machine']['cpu_model']}, two runs at a time, one torch thread each. `study` rows are the "
        "study's own runs scored on val by `acdc-eval`.",
        "",
        "| variant | change | sparsity | seeds | val top-1 | per seed | dense member (val) | training FLOPs (x dense) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    groups: Dict[Tuple[str, float], List[Dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["variant"], r["sparsity"]), []).append(r)
    for (variant, sparsity), rs in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        rs.sort(key=lambda r: r["seed"])
        members = [r["dense_member_val_top1"] for r in rs if r["dense_member_val_top1"] is not None]
        change = VARIANTS[variant][0] if variant in VARIANTS else "the defaults (the study's runs)"
        per_seed = " / ".join(f"{r['val_top1']:.2f}" for r in rs)
        lines.append(
            f"| {variant} | {change} | {100 * sparsity:.0f}% | {','.join(str(r['seed']) for r in rs)} | "
            f"{_ms([r['val_top1'] for r in rs])} | {per_seed} | "
            f"{_ms(members)} | {statistics.fmean(r['training_flops_ratio'] for r in rs):.3f} |"
        )
    return "\n".join(lines + [""])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study_dir", type=Path, help="the study's sweep dir (its GMP and AC/DC runs are the reference)")
    ap.add_argument("--runs", nargs="*", default=[], help="variant:sparsity:seed, variant one of " + ", ".join(VARIANTS))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--cache", type=Path, default=RESULTS / "study_runs" / "fashion_mnist_ablations")
    args = ap.parse_args()
    todo = []
    for spec in args.runs:
        variant, sparsity, seed = spec.split(":")
        if variant not in VARIANTS:
            raise SystemExit(f"variant {variant!r} unknown; one of {', '.join(VARIANTS)}")
        todo.append((variant, float(sparsity), int(seed), args.cache.resolve()))
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        list(pool.map(lambda t: train(*t), todo))
    # every run in the cache, this invocation's and earlier ones' (train() only reads those)
    ablations = [train(*key, args.cache.resolve()) for key in cached_runs(args.cache.resolve())]
    sparsities = sorted({round(r["sparsity"], 4) for r in ablations}) or [0.95]
    rows = study_on_val(args.study_dir, sparsities, args.cache.resolve()) + ablations
    meta = {"date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": describe()}
    (RESULTS / f"{NAME}.json").write_text(json.dumps({**meta, "rows": rows}, indent=2) + "\n")
    md = markdown(rows, meta)
    (RESULTS / f"{NAME}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
