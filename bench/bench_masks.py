"""Time mask recomputation for the 52 layer1..layer4 convs of ResNet-50 (random init).

The goal is <= 0.25 s for block4 at 85% on 2 CPU threads: AC/DC recomputes masks at the start of
every compressed phase, and GMP at every pruning step. Reports the median of several repeats
for block4 and unstructured, per-layer (one threshold per conv, 52 calls) and global (one
threshold over all 52). Load is sampled before and after because other processes on a small
machine can inflate the numbers.

    python bench/bench_masks.py [--repeats 9] [--threads 2] [--sparsity 0.85]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torchvision

from acdc_exp.machine import describe
from acdc_exp.sparsity.masks import compute_mask, mask_sparsity

GOAL_S = 0.25


def _time(fn, repeats: int, warmup: int = 2) -> list:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sparsity", type=float, default=0.85)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "masks.json"))
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None)
    weights = [p.detach() for n, p in model.named_parameters() if n.startswith("layer") and p.ndim == 4]
    assert len(weights) == 52, len(weights)

    load_before = os.getloadavg()
    rows = []
    for mask_type in ("block4", "unstructured"):
        for scope in ("per_layer", "global"):
            if scope == "global":
                fn = lambda mt=mask_type: compute_mask(weights, args.sparsity, mt)  # noqa: E731
            else:
                fn = lambda mt=mask_type: [compute_mask(w, args.sparsity, mt) for w in weights]  # noqa: E731
            times = _time(fn, args.repeats)
            rows.append(
                {
                    "mask_type": mask_type,
                    "scope": scope,
                    "median_s": statistics.median(times),
                    "min_s": min(times),
                    "max_s": max(times),
                    "achieved_sparsity": mask_sparsity(fn()),
                }
            )
    load_after = os.getloadavg()

    result = {
        "bench": "masks",
        "layers": len(weights),
        "weights": sum(w.numel() for w in weights),
        "sparsity": args.sparsity,
        "threads": args.threads,
        "repeats": args.repeats,
        "goal_s": GOAL_S,
        "load_avg_1m_before": load_before[0],
        "load_avg_1m_after": load_after[0],
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": describe(),
        "results": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")

    print(
        f"masks for {len(weights)} ResNet-50 convs at {args.sparsity:.0%}, threads={args.threads}, "
        f"median of {args.repeats}, load(1m) {load_before[0]:.2f} -> {load_after[0]:.2f}"
    )
    print(f"| mask | scope | median s | min s | max s | goal <= {GOAL_S} s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        ok = "ok" if r["median_s"] <= GOAL_S else "over"
        print(f"| {r['mask_type']} | {r['scope']} | {r['median_s']:.3f} | {r['min_s']:.3f} | {r['max_s']:.3f} | {ok} |")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
