"""Small accuracy study on the digits demo: dense vs AC/DC vs GMP at several sparsities.

Every configuration is one run of the real CLI in a subprocess (one at a time, niced):

    acdc-train sparsity=<acdc|gmp|dense> sparsity.sparsity=<s> seed=<k> logger=none
               trainer.progress=false trainer.num_threads=1 paths.runs_root=<cache>
               hydra.run.dir=<cache>/<method>_s<s>_seed<k>

All runs share the demo's 30 epochs, model, data and lr schedule; only the sparsity group
changes. A configuration whose summary.json is already in the cache is skipped, and a run
that was killed resumes from its last.pt (trainer.resume=auto on the same run dir), so the
script can be stopped and started again. Writes study_digits.{json,md,png} to bench/results/.

    python bench/study_digits.py [--seeds 1 2 3] [--sparsities 0.9 0.95 0.98] [--aggregate-only]
"""
from __future__ import annotations

import argparse
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
METHODS = ("acdc", "gmp")
LABELS = {"dense": "dense", "acdc": "AC/DC", "gmp": "GMP"}


def run_key(method: str, sparsity: float, seed: int) -> str:
    return f"dense_seed{seed}" if method == "dense" else f"{method}_s{sparsity:g}_seed{seed}"


def command(method: str, sparsity: float, seed: int, cache: Path) -> List[str]:
    args = ["nice", "-n", "10", str(CLI), f"sparsity={method}"]
    if method != "dense":
        args.append(f"sparsity.sparsity={sparsity:g}")
    return args + [
        f"seed={seed}", "logger=none", "trainer.progress=false", "trainer.num_threads=1",
        f"paths.runs_root={cache}", f"hydra.run.dir={cache / run_key(method, sparsity, seed)}",
    ]


def configurations(seeds: List[int], sparsities: List[float]) -> List[tuple]:
    """Dense once per seed, then every (method, sparsity) per seed; seeds outermost so that a
    partial study already holds complete seeds."""
    out = []
    for seed in seeds:
        out.append(("dense", 0.0, seed))
        for s in sparsities:
            for m in METHODS:
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
        (run_dir / "study_meta.json").write_text(json.dumps(
            {"load_avg_1m_at_start": load, "load_avg_1m_at_end": os.getloadavg()[0],
             "subprocess_wall_s": time.time() - start, "command": " ".join(cmd)}, indent=2))
    summary = json.loads(summary_path.read_text())
    meta_path = run_dir / "study_meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    return {
        "method": method, "sparsity": sparsity, "seed": seed, "key": run_dir.name,
        "final_top1": summary["final_top1"], "final_phase": summary["final_phase"],
        # GMP's "dense member" is the model when pruning starts (epoch 2): not a trained dense
        # model, so only AC/DC's is reported
        "dense_top1": summary["dense_top1"] if method == "acdc" else None,
        "dense_epoch": summary["dense_epoch"] if method == "acdc" else None,
        "sparsity_pruned_layers": summary["sparsity_pruned_layers"],
        "params_nonzero": summary["params_nonzero"], "params_total": summary["params_total"],
        "epochs": summary["epochs"], "wall_time_s": summary["wall_time_s"],
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
            "method": method, "sparsity": sparsity, "seeds": [r["seed"] for r in rs],
            "final_top1": _mean_std([r["final_top1"] for r in rs]),
            "achieved_sparsity": statistics.fmean(r["sparsity_pruned_layers"] for r in rs),
            "params_nonzero": rs[0]["params_nonzero"], "params_total": rs[0]["params_total"],
            "wall_time_s_mean": statistics.fmean(r["wall_time_s"] for r in rs),
        }
        if method == "acdc":
            row["dense_member_top1"] = _mean_std([r["dense_top1"] for r in rs])
            row["dense_member_epoch"] = rs[0]["dense_epoch"]
        rows.append(row)
    return rows


def _fmt(ms: Optional[Dict[str, Any]]) -> str:
    return "-" if ms is None else f"{ms['mean']:.2f} ± {ms['std']:.2f}"


def schedules_line() -> str:
    from omegaconf import OmegaConf

    a = OmegaConf.load(ROOT / "configs" / "sparsity" / "acdc.yaml")
    g = OmegaConf.load(ROOT / "configs" / "sparsity" / "gmp.yaml")
    return (
        f"Schedules (configs/sparsity): AC/DC dense until epoch {a.start_epoch}, then alternating "
        f"{a.update_frequency}-epoch dense/compressed phases; the phase from {a.end_epoch - a.update_frequency} "
        f"on is compressed to the end (masks recomputed at every compressed-phase start and at {a.end_epoch}). "
        f"GMP: dense until {g.start_epoch}, cubic ramp {g.init_sparsity} -> target every {g.update_frequency} "
        f"epoch(s) until {g.end_epoch}, then fine-tuning at the target to the end. Both prune "
        f"{', '.join(a.params)} per layer ({'global' if a.global_sparsity else 'uniform'} sparsity); "
        "stem conv and fc stay dense."
    )


def markdown(rows: List[Dict[str, Any]], meta: Dict[str, Any]) -> str:
    lines = [
        f"# Digits study: dense vs AC/DC vs GMP ({meta['date_utc'][:10]})",
        "",
        f"ResNet-small (depth 8, width 16) on scikit-learn digits through FFCV, {meta['epochs']} epochs, "
        f"seeds {', '.join(map(str, meta['seeds']))}; final validation top-1 (%), mean ± sample std over seeds. "
        f"Machine: {meta['cpu_count']} CPU cores shared with other jobs (1-min load {meta['load_min']:.1f} to "
        f"{meta['load_max']:.1f} at run starts), one run at a time, 1 torch thread, nice 10.",
        "",
        schedules_line(),
        "",
        "| method | target sparsity | achieved (pruned layers) | nonzero params | final top-1 | per seed | AC/DC dense member top-1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        per_seed = " / ".join(f"{v:.2f}" for v in r["final_top1"]["values"])
        sp = "0 (dense)" if r["method"] == "dense" else f"{100 * r['sparsity']:.0f}%"
        achieved = "-" if r["method"] == "dense" else f"{100 * r['achieved_sparsity']:.2f}%"
        lines.append(
            f"| {LABELS[r['method']]} | {sp} | {achieved} | {r['params_nonzero']:,}/{r['params_total']:,} | "
            f"{_fmt(r['final_top1'])} | {per_seed} | {_fmt(r.get('dense_member_top1'))} |"
        )
    lines += ["", "Commands: see `commands` in study_digits.json (one `acdc-train` per row and seed).", ""]
    return "\n".join(lines)


def plot(rows: List[Dict[str, Any]], path: Path) -> None:
    """Left: the full range; right: the same lines zoomed on the top of the scale, where
    methods that have not collapsed differ by a few validation images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    dense = [r for r in rows if r["method"] == "dense"]
    sparse_rows = [r for r in rows if r["method"] != "dense"]
    xs_all = sorted({100 * r["sparsity"] for r in sparse_rows})
    styles = {"acdc": dict(color="C0", marker="o"), "gmp": dict(color="C1", marker="s")}
    for ax in axes:
        if dense:
            d = dense[0]["final_top1"]
            # at least +-0.1 wide so that a zero-std band stays visible
            half = max(d["std"], 0.1)
            ax.axhspan(d["mean"] - half, d["mean"] + half, color="0.85",
                       label=f"dense {d['mean']:.2f} ± {d['std']:.2f} (n={d['n']})")
            ax.axhline(d["mean"], color="0.4", lw=1)
        for method in METHODS:
            rs = sorted((r for r in sparse_rows if r["method"] == method), key=lambda r: r["sparsity"])
            if not rs:
                continue
            xs = [100 * r["sparsity"] for r in rs]
            ax.errorbar(xs, [r["final_top1"]["mean"] for r in rs], yerr=[r["final_top1"]["std"] for r in rs],
                        capsize=4, label=f"{LABELS[method]} (sparse, final)", **styles[method])
            if method == "acdc":
                ax.errorbar([x + 0.1 for x in xs], [r["dense_member_top1"]["mean"] for r in rs],
                            yerr=[r["dense_member_top1"]["std"] for r in rs], capsize=4, ls="--", mfc="none",
                            label="AC/DC dense member", **styles[method])
        ax.set_xticks(xs_all)
        ax.set_xlabel("sparsity of pruned layers (%)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("validation top-1 (%)")
    axes[0].set_title("full range")
    axes[0].legend(fontsize=8, loc="lower left")
    axes[1].set_ylim(96.0, 100.3)
    axes[1].set_title("zoom: 96-100% (1 val image = 0.28 pts)")
    fig.suptitle("digits, ResNet-small, 30 epochs: mean ± std over seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.9, 0.95, 0.98])
    parser.add_argument("--cache", default=str(CACHE), help="one run dir per configuration (resumable)")
    parser.add_argument("--aggregate-only", action="store_true", help="use the runs already in the cache; train none")
    args = parser.parse_args()
    cache = Path(args.cache).resolve()
    cache.mkdir(parents=True, exist_ok=True)

    configs = configurations(args.seeds, args.sparsities)
    records: List[Dict[str, Any]] = []
    started = time.time()
    for i, (method, sparsity, seed) in enumerate(configs, 1):
        key = run_key(method, sparsity, seed)
        done = (cache / key / "summary.json").exists()
        if args.aggregate_only and not done:
            print(f"[{i}/{len(configs)}] {key}: not in the cache, left out", flush=True)
            continue
        print(f"[{i}/{len(configs)}] {key}: {'cached' if done else 'training'} "
              f"(load {os.getloadavg()[0]:.2f}, {time.time() - started:.0f}s so far)", flush=True)
        rec = run_one(method, sparsity, seed, cache)
        records.append(rec)
        dense_part = f", dense member {rec['dense_top1']:.2f}" if rec["dense_top1"] is not None else ""
        print(f"    top1 {rec['final_top1']:.2f}{dense_part}, sparsity {100 * rec['sparsity_pruned_layers']:.2f}%, "
              f"{rec['wall_time_s']:.0f}s", flush=True)
    if not records:
        sys.exit("no runs to aggregate")

    rows = aggregate(records)
    loads = [r["load_avg_1m_at_start"] for r in records if r["load_avg_1m_at_start"] is not None] or [os.getloadavg()[0]]
    meta = {
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(), "epochs": records[0]["epochs"], "seeds": args.seeds,
        "sparsities": args.sparsities, "load_min": min(loads), "load_max": max(loads),
        "commands": [" ".join(command(m, s, k, Path("<cache>"))) for m, s, k in configs],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "study_digits.json").write_text(json.dumps({**meta, "rows": rows, "runs": records}, indent=2) + "\n")
    md = markdown(rows, meta)
    (RESULTS / "study_digits.md").write_text(md)
    plot(rows, RESULTS / "study_digits.png")
    print(md)
    print(f"wrote {RESULTS / 'study_digits.json'}, study_digits.md, study_digits.png")


if __name__ == "__main__":
    main()
