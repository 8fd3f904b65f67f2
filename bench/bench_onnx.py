"""onnxruntime CPU speed of ResNet-50: dense FP32 vs 85% block4-sparse FP32 vs sparse INT8.

Random init (speed does not depend on the values), 224x224 inputs. The 52 layer1..layer4 convs
are pruned to 85% with 4-input-channel blocks; the INT8 model is the same pruned model taken
through this package's QAT path (prepare, a few observing forward passes, torch.ao convert)
and exported as QDQ and as QOperator (QLinearConv). All files run in one process with the same
onnxruntime settings: CPUExecutionProvider, ORT_ENABLE_ALL, N intra-op threads. Latency is the
median over repeats at batch 1; throughput is batch 32 / median time per batch.

onnxruntime's CPU kernels are dense: zeros in the weights cost the same as any other value,
so block sparsity by itself buys no speed here (sparse FP32 ~ dense FP32); the INT8 gain is
int8 arithmetic (VNNI/AMX where the CPU has it). A sparsity-aware engine is what would turn
the 85% block4 zeros into speed.

    python bench/bench_onnx.py [--threads 2] [--repeats 30] [--batch-repeats 5]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import onnxruntime as ort
import torch

from acdc_exp.machine import describe
from acdc_exp.models import build_model
from acdc_exp.quantization.export import export_fp32, export_int8
from acdc_exp.quantization.onnx_graph import weight_sparsity
from acdc_exp.quantization.qat import QATController
from acdc_exp.sparsity.masks import compute_mask
from acdc_exp.sparsity.selection import select_parameters

GOAL_B1 = 3.0  # INT8 speed-up over dense FP32 at batch 1
GOAL_B32 = 3.5  # ... and at batch 32
PRUNED = ["layer*.conv*.weight", "layer*.downsample.0.weight"]


def _session(path: Path, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _times(sess: ort.InferenceSession, x: np.ndarray, repeats: int, warmup: int) -> List[float]:
    feed = {sess.get_inputs()[0].name: x}
    for _ in range(warmup):
        sess.run(None, feed)
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        sess.run(None, feed)
        out.append(time.perf_counter() - start)
    return out


def _build(workdir: Path, sparsity: float, calib_batches: int) -> Dict[str, Path]:
    torch.manual_seed(0)
    dense = build_model("resnet50", num_classes=1000).eval()
    example = torch.randn(1, 3, 224, 224)
    files = {"dense FP32": workdir / "dense_fp32.onnx"}
    export_fp32(dense, files["dense FP32"], example)
    sparse = dense
    with torch.no_grad():
        selected = select_parameters(sparse, PRUNED)
        for _, w in selected:
            w.mul_(compute_mask(w, sparsity, "block4"))
    assert len(selected) == 52, len(selected)
    files["sparse FP32"] = workdir / "sparse_fp32.onnx"
    export_fp32(sparse, files["sparse FP32"], example)
    ctrl = QATController()
    ctrl.prepare(sparse)
    sparse.train()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # observers and BN statistics see a few batches
        for _ in range(calib_batches):
            sparse(torch.randn(8, 3, 224, 224, generator=gen))
    int8 = ctrl.convert(sparse)
    files["sparse INT8 (QDQ)"] = workdir / "sparse_int8_qdq.onnx"
    export_int8(int8, files["sparse INT8 (QDQ)"], example, "qdq")
    files["sparse INT8 (QOperator)"] = workdir / "sparse_int8_qoperator.onnx"
    export_int8(int8, files["sparse INT8 (QOperator)"], example, "qoperator")
    return files


def _layer_sparsity(path: Path) -> float:
    import onnx

    rows = [r for r in weight_sparsity(onnx.load(str(path))) if r.layer.startswith("layer")]
    return sum(r.zeros for r in rows) / sum(r.numel for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30, help="batch-1 runs (median)")
    parser.add_argument("--batch-repeats", type=int, default=5, help="batch-32 runs (median)")
    parser.add_argument("--sparsity", type=float, default=0.85)
    parser.add_argument("--calib-batches", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "onnx.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        files = _build(Path(tmp), args.sparsity, args.calib_batches)
        build_s = time.perf_counter() - t0
        rng = np.random.default_rng(0)
        x1 = rng.standard_normal((1, 3, 224, 224), dtype=np.float32)
        x32 = rng.standard_normal((32, 3, 224, 224), dtype=np.float32)
        results = {}
        for name, path in files.items():
            sess = _session(path, args.threads)
            b1 = _times(sess, x1, args.repeats, warmup=5)
            b32 = _times(sess, x32, args.batch_repeats, warmup=1)
            results[name] = {
                "file_mb": path.stat().st_size / 2**20,
                "pruned_layer_sparsity": _layer_sparsity(path),
                "batch1_latency_ms": 1e3 * statistics.median(b1),
                "batch1_p90_ms": 1e3 * float(np.percentile(b1, 90)),
                "batch32_ms": 1e3 * statistics.median(b32),
                "batch32_img_per_s": 32 / statistics.median(b32),
            }
            del sess
            print(f"{name}: {results[name]['batch1_latency_ms']:.1f} ms @1, {results[name]['batch32_img_per_s']:.1f} img/s @32", flush=True)
    base = results["dense FP32"]
    for r in results.values():
        r["speedup_batch1"] = base["batch1_latency_ms"] / r["batch1_latency_ms"]
        r["speedup_batch32"] = r["batch32_img_per_s"] / base["batch32_img_per_s"]
    best_int8 = max((k for k in results if "INT8" in k), key=lambda k: results[k]["speedup_batch1"])
    report = {
        "what": "ResNet-50 224px, onnxruntime CPU, dense FP32 vs 85% block4 sparse FP32 vs sparse INT8",
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "onnxruntime": ort.__version__,
        "torch": torch.__version__,
        "machine": describe(),
        "threads": args.threads,
        "repeats_batch1": args.repeats,
        "repeats_batch32": args.batch_repeats,
        "load_avg_before": load_before,
        "load_avg_after": os.getloadavg(),
        "build_s": build_s,
        "results": results,
        "goal": {"int8_speedup_batch1": GOAL_B1, "int8_speedup_batch32": GOAL_B32},
        "best_int8": best_int8,
        "goal_met": {
            "batch1": results[best_int8]["speedup_batch1"] >= GOAL_B1,
            "batch32": max(r["speedup_batch32"] for k, r in results.items() if "INT8" in k) >= GOAL_B32,
        },
        "note": "onnxruntime's CPU kernels ignore weight sparsity; INT8 gains come from int8 arithmetic only.",
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print()
    print(f"ResNet-50 224px, onnxruntime {ort.__version__} CPU, {args.threads} threads, median of {args.repeats} (batch 1) / {args.batch_repeats} (batch 32) runs; load {load_before[0]:.2f} before")
    print()
    print("| model | pruned-layer sparsity | file MB | batch 1 latency ms | speed-up | batch 32 img/s | speed-up |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {100 * r['pruned_layer_sparsity']:.1f}% | {r['file_mb']:.1f} | {r['batch1_latency_ms']:.1f} | "
              f"{r['speedup_batch1']:.2f}x | {r['batch32_img_per_s']:.1f} | {r['speedup_batch32']:.2f}x |")
    print()
    print(f"goal INT8 >= {GOAL_B1}x @1: {'met' if report['goal_met']['batch1'] else 'NOT met'}; "
          f">= {GOAL_B32}x @32: {'met' if report['goal_met']['batch32'] else 'NOT met'}  -> {out}")


if __name__ == "__main__":
    main()
