"""Accuracy study on the digits demo: dense vs AC/DC variants vs GMP at several sparsities.

Every configuration is one run of the real CLI in a subprocess (niced, 1 torch thread):

    acdc-train <variant's overrides> sparsity.sparsity=<s> seed=<k> logger=none
               trainer.progress=false trainer.num_threads=1 paths.runs_root=<cache>
               hydra.run.dir=<cache>/<variant>_s<s>_seed<k>

A variant is a name for a set of overrides (VARIANTS below): the shipped defaults
(``acdc``, ``gmp``, ``acdc_paper``) and the ablations of the sparsifier's options. All runs
share the demo's 30 epochs, model, data and lr schedule. A configuration whose summary.json
is already in the cache is skipped, and a killed run resumes from its last.pt, so the script
can be stopped and started again. ``--jobs 2`` runs two at a time (one per core).

Tune on some seeds (``--name study_digits_tuning --seeds 11 12 13``) and report on others
(the default name and seeds 1 2 3): each name writes <name>.{json,md,png} to bench/results/.

    python bench/study_digits.py [--variants acdc gmp ...] [--seeds 1 2 3]
        [--sparsities 0.9 0.95 0.98] [--jobs 2] [--name study_digits] [--aggregate-only]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CACHE = RESULTS / "study_runs"
CLI = ROOT / ".venv" / "bin" / "acdc-train"
# name -> (label, overrides); "dense" is trained once per seed, the rest at every sparsity
VARIANTS: Dict[str, tuple] = {
    "dense": ("dense", ["sparsity=dense"]),
    "acdc": ("AC/DC, defaults", ["sparsity=acdc"]),
    "gmp": ("GMP", ["sparsity=gmp"]),
    "acdc_paper": ("AC/DC paper variant", ["sparsity=acdc_paper"]),
    # acdc-exp before issue 13: pruned entries' momentum reset, no lr ramp, running BN statistics
    "acdc_before": (
        "AC/DC before the fixes",
        [
            "sparsity=acdc",
            "sparsity.reset_momentum=pruned",
            "sparsity.dense_phase_warmup_epochs=0",
            "trainer.bn_recalibration_batches=0",
        ],
    ),
    # SparseML to the letter: every momentum buffer reset, no lr ramp, running BN statistics
    "acdc_sparseml": (
        "AC/DC as SparseML",
        ["sparsity=acdc", "sparsity.dense_phase_warmup_epochs=0", "trainer.bn_recalibration_batches=0"],
    ),
    # ablations: the defaults with one choice changed
    "acdc_no_ramp": ("AC/DC defaults, no dense-phase lr ramp", ["sparsity=acdc", "sparsity.dense_phase_warmup_epochs=0"]),
    "acdc_no_recal": ("AC/DC defaults, no BN recalibration", ["sparsity=acdc", "trainer.bn_recalibration_batches=0"]),
    "acdc_reset_pruned": ("AC/DC defaults, reset_momentum=pruned", ["sparsity=acdc", "sparsity.reset_momentum=pruned"]),
    "acdc_reset_none": ("AC/DC defaults, reset_momentum=none", ["sparsity=acdc", "sparsity.reset_momentum=none"]),
    "acdc_keep_pruned": ("AC/DC defaults, dead_channels=keep_pruned", ["sparsity=acdc", "sparsity.dead_channels=keep_pruned"]),
    "acdc_floor1": ("AC/DC defaults, min_kept_per_channel=1", ["sparsity=acdc", "sparsity.min_kept_per_channel=1"]),
    # candidates tried on the tuning seeds (11-13) only
    "acdc_keep_pruned_only": (
        "SparseML + keep_pruned",
        [
            "sparsity=acdc",
            "sparsity.dense_phase_warmup_epochs=0",
            "sparsity.dead_channels=keep_pruned",
            "trainer.bn_recalibration_batches=0",
        ],
    ),
}
METHODS = tuple(v for v in VARIANTS if v != "dense")


def label(variant: str) -> str:
    return VARIANTS[variant][0]


def run_key(method: str, sparsity: float, seed: int) -> str:
    return f"dense_seed{seed}" if method == "dense" else f"{method}_s{sparsity:g}_seed{seed}"


def command(method: str, sparsity: float, seed: int, cache: Path) -> List[str]:
    args = ["nice", "-n", "10", str(CLI), *VARIANTS[method][1]]
    if method != "dense":
        args.append(f"sparsity.sparsity={sparsity:g}")
    return args + [
        f"seed={seed}",
        "logger=none",
        "trainer.progress=false",
        "trainer.num_threads=1",
        f"paths.runs_root={cache}",
        f"hydra.run.dir={cache / run_key(method, sparsity, seed)}",
    ]


def configurations(variants: List[str], seeds: List[int], sparsities: List[float]) -> List[tuple]:
    """Dense once per seed, then every (variant, sparsity) per seed; seeds outermost so that a
    partial study already holds complete seeds."""
    out = []
    for seed in seeds:
        if "dense" in variants:
            out.append(("dense", 0.0, seed))
        for s in sparsities:
            for m in variants:
                if m != "dense":
                    out.append((m, s, seed))
    return out


def run_one(method: str, sparsity: float, seed: int, cache: Path) -> Dict[str, Any]:
    run_dir = cache / run_key(method, sparsity, seed)
    summary_path = run_dir / "summary.json"
    if not summary_path.exists():
        cmd = command(method, sparsity, seed, cache)
        load = os.getloadavg()[0]
        start = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "cli_output.txt").write_text(" ".join(cmd) + "\n\n" + proc.stdout + proc.stderr)
        if proc.returncode != 0 or not summary_path.exists():
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
            raise SystemExit(f"run {run_dir.name} failed (exit {proc.returncode}):\n" + "\n".join(tail))
        (run_dir / "study_meta.json").write_text(
            json.dumps(
                {
                    "load_avg_1m_at_start": load,
                    "load_avg_1m_at_end": os.getloadavg()[0],
                    "subprocess_wall_s": time.time() - start,
                    "command": " ".join(cmd),
                },
                indent=2,
            )
        )
    summary = json.loads(summary_path.read_text())
    meta_path = run_dir / "study_meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    return {
        "method": method,
        "sparsity": sparsity,
        "seed": seed,
        "key": run_dir.name,
        "final_top1": summary["final_top1"],
        "final_phase": summary["final_phase"],
        # GMP's "dense member" is the model when pruning starts (epoch 2): not a trained dense
        # model, so only AC/DC's is reported
        "dense_top1": summary["dense_top1"] if method.startswith("acdc") else None,
        "dense_epoch": summary["dense_epoch"] if method.startswith("acdc") else None,
        "dense_phase_dip": summary.get("dense_phase_dip"),
        "compressed_phase_drop": summary.get("compressed_phase_drop"),
        "history": summary.get("history"),
        "sparsity_pruned_layers": summary["sparsity_pruned_layers"],
        "params_nonzero": summary["params_nonzero"],
        "params_total": summary["params_total"],
        "epochs": summary["epochs"],
        "wall_time_s": summary["wall_time_s"],
        "load_avg_1m_at_start": meta.get("load_avg_1m_at_start"),
    }


def _mean_std(values: List[float]) -> Dict[str, Any]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,  # sample std (n - 1)
        "n": len(values),
        "values": values,
    }


def aggregate(records: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    groups: Dict[tuple, List[Dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["method"], r["sparsity"]), []).append(r)
    rows = []
    for (method, sparsity), rs in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        row = {
            "method": method,
            "sparsity": sparsity,
            "seeds": [r["seed"] for r in rs],
            "final_top1": _mean_std([r["final_top1"] for r in rs]),
            "achieved_sparsity": statistics.fmean(r["sparsity_pruned_layers"] for r in rs),
            "params_nonzero": rs[0]["params_nonzero"],
            "params_total": rs[0]["params_total"],
            "wall_time_s_mean": statistics.fmean(r["wall_time_s"] for r in rs),
        }
        if method.startswith("acdc"):
            row["dense_member_top1"] = _mean_std([r["dense_top1"] for r in rs])
            row["dense_member_epoch"] = rs[0]["dense_epoch"]
            dips = [r["dense_phase_dip"] for r in rs if r.get("dense_phase_dip") is not None]
            drops = [r["compressed_phase_drop"] for r in rs if r.get("compressed_phase_drop") is not None]
            row["dense_phase_dip"] = _mean_std(dips) if dips else None
            row["dense_phase_dip_worst"] = max(dips) if dips else None
            row["compressed_phase_drop_worst"] = max(drops) if drops else None
        rows.append(row)
    return rows


def _fmt(ms: Optional[Dict[str, Any]]) -> str:
    return "-" if ms is None else f"{ms['mean']:.2f} ± {ms['std']:.2f}"


def schedules_line() -> str:
    from omegaconf import OmegaConf

    a = OmegaConf.load(ROOT / "configs" / "sparsity" / "acdc.yaml")
    g = OmegaConf.load(ROOT / "configs" / "sparsity" / "gmp.yaml")
    t = OmegaConf.load(ROOT / "configs" / "trainer" / "default.yaml")
    return (
        f"Schedules (configs/sparsity): AC/DC dense until epoch {a.start_epoch}, then alternating "
        f"{a.update_frequency}-epoch dense/compressed phases; the phase from {a.end_epoch - a.update_frequency} "
        f"on is compressed to the end (masks recomputed at every compressed-phase start and at {a.end_epoch}). "
        f"GMP: dense until {g.start_epoch}, cubic ramp {g.init_sparsity} -> target every {g.update_frequency} "
        f"epoch(s) until {g.end_epoch}, then fine-tuning at the target to the end. Both prune "
        f"{', '.join(a.params)} per layer ({'global' if a.global_sparsity else 'uniform'} sparsity); "
        "stem conv and fc stay dense. AC/DC defaults: "
        f"reset_momentum={a.reset_momentum}, dense_phase_warmup_epochs={a.dense_phase_warmup_epochs}, "
        f"dead_channels={a.dead_channels}, min_kept_per_channel={a.min_kept_per_channel}; every run "
        f"(GMP and dense too) recalibrates BatchNorm before evaluations from {t.bn_recalibration_batches} "
        "training batches unless its variant says otherwise."
    )


def _dip(r: Dict[str, Any]) -> str:
    d = r.get("dense_phase_dip")
    if not d:
        return "-"
    return f"{d['mean']:.1f} / {r['dense_phase_dip_worst']:.1f} ({r['compressed_phase_drop_worst']:.1f})"


def markdown(rows: List[Dict[str, Any]], meta: Dict[str, Any]) -> str:
    lines = [
        f"# Digits study: {meta['name']} ({meta['date_utc'][:10]})",
        "",
        f"ResNet-small (depth 8, width 16) on scikit-learn digits through FFCV, {meta['epochs']} epochs, "
        f"seeds {', '.join(map(str, meta['seeds']))}; final validation top-1 (%) on 360 images (one image = "
        f"0.28 points), mean ± sample std over seeds. Machine: {meta['machine']}, {meta['cpu_count']} cores "
        f"(1-min load {meta['load_min']:.1f} to {meta['load_max']:.1f} at run starts), {meta['jobs']} run(s) at a "
        "time, 1 torch thread each.",
        "",
        schedules_line(),
        "",
        "Dense-phase dip: the top-1 at the last evaluation before a dense phase minus the lowest top-1 "
        "evaluated in it, the worst phase of a run; shown as mean over seeds / worst seed, and in brackets "
        "the worst drop inside a compressed phase (from its first evaluation) for comparison.",
        "",
        "| variant | target sparsity | achieved | nonzero params | final top-1 | per seed "
        "| dense member top-1 | dense-phase dip |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        per_seed = " / ".join(f"{v:.2f}" for v in r["final_top1"]["values"])
        sp = "0 (dense)" if r["method"] == "dense" else f"{100 * r['sparsity']:.0f}%"
        achieved = "-" if r["method"] == "dense" else f"{100 * r['achieved_sparsity']:.2f}%"
        lines.append(
            f"| {label(r['method'])} (`{r['method']}`) | {sp} | {achieved} | {r['params_nonzero']:,}/{r['params_total']:,} | "
            f"{_fmt(r['final_top1'])} | {per_seed} | {_fmt(r.get('dense_member_top1'))} | {_dip(r)} |"
        )
    lines += ["", "Commands: see `commands` in the JSON (one `acdc-train` per row and seed).", ""]
    return "\n".join(lines)


def plot(rows: List[Dict[str, Any]], path: Path, title: str) -> None:
    """Left: the full range; right: the same lines zoomed on the top of the scale, where
    methods that have not collapsed differ by a few validation images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    dense = [r for r in rows if r["method"] == "dense"]
    sparse_rows = [r for r in rows if r["method"] != "dense"]
    variants = [v for v in VARIANTS if any(r["method"] == v for r in sparse_rows)]
    xs_all = sorted({100 * r["sparsity"] for r in sparse_rows})
    markers = "osD^v<>pPX"
    for ax in axes:
        if dense:
            d = dense[0]["final_top1"]
            half = max(d["std"], 0.1)  # at least +-0.1 wide so that a zero-std band stays visible
            ax.axhspan(
                d["mean"] - half, d["mean"] + half, color="0.85", label=f"dense {d['mean']:.2f} ± {d['std']:.2f} (n={d['n']})"
            )
            ax.axhline(d["mean"], color="0.4", lw=1)
        for k, variant in enumerate(variants):
            rs = sorted((r for r in sparse_rows if r["method"] == variant), key=lambda r: r["sparsity"])
            style = dict(color=f"C{k}", marker=markers[k % len(markers)])
            xs = [100 * r["sparsity"] + 0.08 * k for r in rs]
            ax.errorbar(
                xs,
                [r["final_top1"]["mean"] for r in rs],
                yerr=[r["final_top1"]["std"] for r in rs],
                capsize=3,
                label=f"{label(variant)}: sparse",
                **style,
            )
            if variant == "acdc":  # the shipped AC/DC's dense member (the other variants' in the JSON)
                ax.errorbar(
                    [x + 0.04 for x in xs],
                    [r["dense_member_top1"]["mean"] for r in rs],
                    yerr=[r["dense_member_top1"]["std"] for r in rs],
                    capsize=3,
                    ls="--",
                    mfc="none",
                    label=f"{label(variant)}: dense member",
                    **style,
                )
        ax.set_xticks(xs_all)
        ax.set_xlabel("sparsity of pruned layers (%)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("validation top-1 (%)")
    axes[0].set_title("full range")
    axes[0].legend(fontsize=7, loc="lower left")
    axes[1].set_ylim(96.0, 100.3)
    axes[1].set_title("zoom: 96-100% (1 val image = 0.28 pts)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["dense", "acdc", "gmp", "acdc_paper"], choices=list(VARIANTS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.9, 0.95, 0.98])
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (each uses 1 torch thread)")
    parser.add_argument("--name", default="study_digits", help="output files bench/results/<name>.{json,md,png}")
    parser.add_argument("--cache", default=str(CACHE), help="one run dir per configuration (resumable)")
    parser.add_argument("--aggregate-only", action="store_true", help="use the runs already in the cache; train none")
    args = parser.parse_args()
    cache = Path(args.cache).resolve()
    cache.mkdir(parents=True, exist_ok=True)

    configs = configurations(args.variants, args.seeds, args.sparsities)
    started = time.time()
    todo = [c for c in configs if args.aggregate_only is False or (cache / run_key(*c) / "summary.json").exists()]

    def one(c: tuple) -> Dict[str, Any]:
        rec = run_one(*c, cache)
        print(
            f"[{time.time() - started:5.0f}s] {rec['key']}: top1 {rec['final_top1']:.2f}"
            + (f", dense member {rec['dense_top1']:.2f}" if rec["dense_top1"] is not None else "")
            + (f", dip {rec['dense_phase_dip']:.1f}" if rec.get("dense_phase_dip") is not None else ""),
            flush=True,
        )
        return rec

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        records: List[Dict[str, Any]] = list(pool.map(one, todo))
    if not records:
        sys.exit("no runs to aggregate")

    from acdc_exp.machine import describe

    rows = aggregate(records)
    loads = [r["load_avg_1m_at_start"] for r in records if r["load_avg_1m_at_start"] is not None] or [os.getloadavg()[0]]
    machine = describe()
    meta = {
        "name": args.name,
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "machine": machine.get("cpu_model", "?"),
        "machine_full": machine,
        "jobs": args.jobs,
        "epochs": records[0]["epochs"],
        "seeds": args.seeds,
        "variants": args.variants,
        "sparsities": args.sparsities,
        "load_min": min(loads),
        "load_max": max(loads),
        "commands": [" ".join(command(m, s, k, Path("<cache>"))) for m, s, k in configs],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps({**meta, "rows": rows, "runs": records}, indent=2) + "\n")
    md = markdown(rows, meta)
    (RESULTS / f"{args.name}.md").write_text(md)
    plot(
        rows,
        RESULTS / f"{args.name}.png",
        f"digits, ResNet-small, {meta['epochs']} epochs, seeds {', '.join(map(str, args.seeds))}: mean ± std",
    )
    print(md)
    print(f"wrote {RESULTS / args.name}.json, .md, .png")


if __name__ == "__main__":
    main()
