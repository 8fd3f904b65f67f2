"""``acdc-export``: ONNX files of a run's members, checked with onnxruntime.

    acdc-export checkpoint=runs/digits_acdc/2024-..            # dense + final, QDQ int8
    acdc-export checkpoint=RUN member=final format=qoperator out=onnx/
    acdc-export checkpoint=RUN/checkpoints/final.pt
    acdc-export checkpoint=RUN format=qoperator --benchmark threads=2 bench_batch=16
    acdc-export checkpoint=RUN opset_fp32=19 opset_int8=13 ir_version=9

Writes <member>_fp32.onnx for every member and, for a member saved during QAT,
<member>_int8_<format>.onnx; prints the agreement with PyTorch and per-layer weight
sparsity as read back from each file, and writes export_report.json beside them.
Verification inputs: ``inputs=random`` (default) uses ``batch`` N(0, 1) images at the run's
validation resolution; ``inputs=val`` uses the first ``batch`` validation images of the run's
own data config (the dataset must be available).

Opsets and IR versions: by default FP32 files get opset 18 and int8 files opset 13, each with the
lowest IR version its opset needs, so every file loads in onnxruntime and in DeepSparse 1.8;
``opset_fp32``, ``opset_int8`` and ``ir_version`` override them.

``--benchmark`` then times every file: batch-1 latency and batch-``bench_batch`` throughput in
onnxruntime and, when scripts/setup_deepsparse.sh has set it up, in DeepSparse
(``deepsparse=auto|off|required``), against the dense member's FP32 file in onnxruntime. It
prints a table, writes speed_report.json beside the files, and adds the table to the run's W&B
run when the run logged to W&B.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Dict, List

from acdc_exp.cli.common import die, guarded
from acdc_exp.cli.kvargs import integer, positive_int, split_args
from acdc_exp.errors import ConfigError

PROG = "acdc-export"
KEYS = (
    "checkpoint",
    "member",
    "format",
    "out",
    "batch",
    "seed",
    "inputs",
    "opset_fp32",
    "opset_int8",
    "ir_version",
    "threads",
    "bench_batch",
    "repeats",
    "batch_repeats",
    "deepsparse",
)
BENCHMARK_FLAG = "--benchmark"


def main(argv: List[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "args",
        nargs="*",
        help="checkpoint=PATH member=all|dense|final format=qdq|qoperator out=DIR batch=N "
        "seed=N inputs=random|val opset_fp32=N opset_int8=N ir_version=N; with --benchmark: threads=N "
        "bench_batch=N repeats=N batch_repeats=N deepsparse=auto|off|required",
    )
    parser.add_argument(BENCHMARK_FLAG, action="store_true", help="time every file in onnxruntime and DeepSparse")
    ns = parser.parse_intermixed_args(argv)  # key=value before and after --benchmark

    def go() -> Dict[str, Any]:
        from acdc_exp.quantization.onnx_compat import OnnxVersions
        from acdc_exp.runs.export import run_export
        from acdc_exp.speed.report import BenchSettings

        opts, rest = split_args(ns.args, KEYS)
        if rest:
            raise ConfigError(f"unknown argument {rest[0]!r}; allowed keys: {', '.join(KEYS)}")
        if "checkpoint" not in opts:
            raise ConfigError("checkpoint= is required (a run dir or a .pt file)")
        bench_keys = [k for k in ("threads", "bench_batch", "repeats", "batch_repeats", "deepsparse") if k in opts]
        if bench_keys and not ns.benchmark:
            raise ConfigError(f"{bench_keys[0]}= only applies with {BENCHMARK_FLAG}")
        versions = OnnxVersions(
            *(positive_int(k, opts[k]) if k in opts else None for k in ("opset_fp32", "opset_int8", "ir_version"))
        )
        default = BenchSettings()
        bench = (
            BenchSettings(
                threads=positive_int("threads", opts.get("threads", str(default.threads))),
                batch=positive_int("bench_batch", opts.get("bench_batch", str(default.batch))),
                repeats=positive_int("repeats", opts.get("repeats", str(default.repeats))),
                batch_repeats=positive_int("batch_repeats", opts.get("batch_repeats", str(default.batch_repeats))),
                deepsparse=opts.get("deepsparse", default.deepsparse),
            )
            if ns.benchmark
            else None
        )
        return run_export(
            opts["checkpoint"],
            member=opts.get("member", "all"),
            fmt=opts.get("format", "qdq"),
            out=opts.get("out"),
            batch=positive_int("batch", opts.get("batch", "8")),
            seed=integer("seed", opts.get("seed", "0")),
            inputs=opts.get("inputs", "random"),
            versions=versions,
            benchmark=bench,
        )

    report = guarded(PROG, go)
    print(report["table"])
    print(f"report: {Path(report['out_dir']) / 'export_report.json'}")
    if "speed" in report:
        print(report["speed"]["table"])
        print(f"speed report: {Path(report['out_dir']) / 'speed_report.json'}")
        if report["speed"]["wandb"]:
            print(f"W&B: added to run {report['speed']['wandb']['run_id']}")
    if not report["all_ok"]:
        die(PROG, "an exported file disagrees with PyTorch beyond its bound (see the table)", code=1)


if __name__ == "__main__":
    main()
