"""What an epoch checkpoint of the reference job costs: the size of last.pt for ResNet-50 with
85% block4 masks and SGD momentum (what Trainer.state_dict holds, less the small parts), and
the time checkpoint.save_atomic takes to write it (torch.save, fsync, rename) on this disk.

Extrapolated to the reference job: one epoch of ImageNet on 8 GPUs at an assumed per-GPU
speed (--img-per-s-per-gpu, the trainer's AMP + channels_last step), so the write's share of
an epoch is printed. Results go to bench/results/checkpoint.json.

    python bench/bench_checkpoint.py [--repeats 5] [--dir /path/on/the/cluster/filesystem]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from bench_step_overhead import _step_plan, reference_method  # bench/ is on the path when run as a script

from acdc_exp.machine import describe
from acdc_exp.models import build_model
from acdc_exp.training.checkpoint import rng_state, save_atomic

ROOT = Path(__file__).resolve().parent.parent
IMAGENET_TRAIN = 1_281_167


def reference_state() -> dict:
    """last.pt's large parts for the reference job in a compressed phase."""
    model = build_model("resnet50", num_classes=1000).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    method = reference_method()
    sparsifier = method.sparsifier(model)
    sparsifier.attach_optimizer(opt)
    plan = _step_plan(update_masks=True, sparsity=method.target_sparsity)  # a compressed phase's first step
    sparsifier.begin_step(plan)
    model(torch.randn(2, 3, 64, 64)).sum().backward()  # momentum buffers exist after one step
    sparsifier.mask_gradients()
    opt.step()
    sparsifier.end_step()
    return {"model": model.state_dict(), "optimizer": opt.state_dict(), "sparsifier": sparsifier.state_dict(), "rng": rng_state()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dir", default=None, help="where to write (default: a temporary dir on this disk)")
    ap.add_argument("--img-per-s-per-gpu", type=float, default=2500.0, help="assumed training speed for the extrapolation")
    ap.add_argument("--gpus", type=int, default=8)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "checkpoint.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    state = reference_state()
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        path = Path(d) / "last.pt"
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            save_atomic(state, path)
            times.append(time.perf_counter() - t0)
        size = path.stat().st_size
    write_s = statistics.median(times)
    epoch_s = IMAGENET_TRAIN / (args.img_per_s_per_gpu * args.gpus)
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": describe(),
        "checkpoint_mb": size / 2**20,
        "write_s_median": write_s,
        "write_s_all": times,
        "write_mb_per_s": size / 2**20 / write_s,
        "assumed_epoch_s": epoch_s,
        "assumed": f"{args.gpus} GPUs x {args.img_per_s_per_gpu:.0f} img/s (not measured here)",
        "share_of_epoch_pct": 100.0 * write_s / epoch_s,
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"last.pt {result['checkpoint_mb']:.0f} MiB, written in {write_s:.2f} s ({result['write_mb_per_s']:.0f} MiB/s); "
        f"{100 * write_s / epoch_s:.2f}% of an assumed {epoch_s:.0f} s epoch ({result['assumed']})"
    )


if __name__ == "__main__":
    main()
