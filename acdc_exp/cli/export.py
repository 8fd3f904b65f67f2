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
import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from acdc_exp.cli.common import die, guarded
from acdc_exp.cli.kvargs import choice, integer, positive_int, split_args
from acdc_exp.errors import CheckpointError, ConfigError

if TYPE_CHECKING:  # the CLI imports torch-heavy modules only when it runs
    from acdc_exp.quantization.export import ExportedFile
    from acdc_exp.quantization.onnx_compat import OnnxVersions
    from acdc_exp.speed.report import BenchSettings

PROG = "acdc-export"
KEYS = ("checkpoint", "member", "format", "out", "batch", "seed", "inputs", "opset_fp32", "opset_int8", "ir_version",
        "threads", "bench_batch", "repeats", "batch_repeats", "deepsparse")
BENCHMARK_FLAG = "--benchmark"
INPUT_CHOICES = ("random", "val")
MEMBER_CHOICES = ("all", "dense", "final")


def _val_images(config: Dict[str, Any], n: int):
    """The first ``n`` validation images of the run's data, normalized as the model saw them."""
    import torch

    from acdc_exp.cli.evaluate import _compose
    from acdc_exp.data import build_data

    cfg = _compose([], config)
    data = build_data(cfg.data, data_cache=str(cfg.paths.data_cache), device=torch.device("cpu"), seed=int(cfg.seed))
    chunks, have = [], 0
    with contextlib.closing(iter(data.val_batches())) as batches:  # stop the loader now
        for images, _ in batches:
            chunks.append(data.prepare(images))
            have += images.shape[0]
            if have >= n:
                break
    return torch.cat(chunks)[:n]


def run_export(
    checkpoint: str, *, member: str = "all", fmt: str = "qdq", out: str | None = None, batch: int = 8, seed: int = 0,
    inputs: str = "random", versions: Optional["OnnxVersions"] = None, benchmark: Optional["BenchSettings"] = None,
) -> Dict[str, Any]:
    """Export and verify; returns the report (also written to <out>/export_report.json).
    ``versions``: an ``OnnxVersions``; ``benchmark``: ``BenchSettings`` to time the files."""
    import torch

    from acdc_exp.quantization.export import FORMATS, export_member, format_table, warm_dynamo_exporter
    from acdc_exp.quantization.onnx_compat import OnnxVersions
    from acdc_exp.quantization.restore import load_member, member_path

    versions = (versions or OnnxVersions()).check()
    if benchmark is not None:
        benchmark.check()  # bad settings fail before minutes of export

    choice("member", member, MEMBER_CHOICES)
    choice("format", fmt, FORMATS)
    choice("inputs", inputs, INPUT_CHOICES)
    src = Path(checkpoint)
    if src.is_file():
        targets = {src.stem if src.stem in ("dense", "final") else "final": str(src)}
        run_dir = src.parent.parent if src.parent.name == "checkpoints" else src.parent
    else:
        if not src.exists():
            raise CheckpointError(f"checkpoint={checkpoint!r} does not exist (give a run dir or a .pt file)")
        names = ["dense", "final"] if member == "all" else [member]
        targets = {}
        for name in names:
            try:
                targets[name] = str(member_path(checkpoint, name))
            except CheckpointError:
                if member != "all":
                    raise
        if not targets:
            raise CheckpointError(f"checkpoint={checkpoint!r} has no dense.pt or final.pt under checkpoints/")
        run_dir = src
    out_dir = Path(out) if out else run_dir / "export"
    warm_dynamo_exporter()  # before data loaders run (see its docstring)
    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    files = []
    config: Dict[str, Any] = {}
    res = 224
    for name, path in targets.items():
        model, _, config = load_member(path, "final" if name == "final" else name)
        res = int(config.get("data", {}).get("val_res", 224))
        backend = str(config.get("quantization", {}).get("backend", "x86"))
        images = _val_images(config, batch) if inputs == "val" else None
        files += export_member(model, name, out_dir, res=res, fmt=fmt, backend=backend, batch=batch, seed=seed, inputs=images,
                               versions=versions)
    report = {
        "checkpoint": str(checkpoint),
        "format": fmt,
        "inputs": inputs,
        "files": [f.as_dict() for f in files],
        "all_ok": all(f.agreement.ok and f.agreement.dynamic_batch_ok for f in files),
    }
    (out_dir / "export_report.json").write_text(json.dumps(report, indent=2))
    report["table"] = format_table(files)
    report["out_dir"] = str(out_dir)
    if benchmark is not None:
        report["speed"] = _benchmark(files, benchmark, res=res, out_dir=out_dir, run_dir=run_dir, config=config)
    return report


def _benchmark(
    files: List["ExportedFile"], settings: "BenchSettings", *, res: int, out_dir: Path, run_dir: Path, config: Dict[str, Any],
) -> Dict[str, Any]:
    """Time the exported files (see the module docstring); W&B when the run logged there."""
    import dataclasses

    from acdc_exp.speed.report import BenchFile, format_speed_table, speed_report
    from acdc_exp.speed.wandb_report import log_speed_report

    settings = dataclasses.replace(settings, res=res)
    speed = speed_report([BenchFile(f.member, f.kind, f.path) for f in files], settings)
    (out_dir / "speed_report.json").write_text(json.dumps(speed, indent=2))
    summary_path = run_dir / "summary.json"
    run_id = json.loads(summary_path.read_text()).get("wandb_run_id") if summary_path.is_file() else None
    logger_cfg = config.get("logger", {})
    speed["wandb"] = None
    if run_id and logger_cfg.get("kind") == "wandb":
        speed["wandb"] = {"run_id": run_id, "sync_file": log_speed_report(speed, run_dir=run_dir, run_id=run_id, logger_cfg=logger_cfg)}
    speed["table"] = format_speed_table(speed)
    return speed


def main(argv: List[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("args", nargs="*", help="checkpoint=PATH member=all|dense|final format=qdq|qoperator out=DIR batch=N "
                        "seed=N inputs=random|val opset_fp32=N opset_int8=N ir_version=N; with --benchmark: threads=N "
                        "bench_batch=N repeats=N batch_repeats=N deepsparse=auto|off|required")
    parser.add_argument(BENCHMARK_FLAG, action="store_true", help="time every file in onnxruntime and DeepSparse")
    ns = parser.parse_intermixed_args(argv)  # key=value before and after --benchmark

    def go() -> Dict[str, Any]:
        from acdc_exp.quantization.onnx_compat import OnnxVersions
        from acdc_exp.speed.report import DEEPSPARSE_MODES, BenchSettings

        opts, rest = split_args(ns.args, KEYS)
        if rest:
            raise ConfigError(f"unknown argument {rest[0]!r}; allowed keys: {', '.join(KEYS)}")
        if "checkpoint" not in opts:
            raise ConfigError("checkpoint= is required (a run dir or a .pt file)")
        bench_keys = [k for k in ("threads", "bench_batch", "repeats", "batch_repeats", "deepsparse") if k in opts]
        if bench_keys and not ns.benchmark:
            raise ConfigError(f"{bench_keys[0]}= only applies with {BENCHMARK_FLAG}")
        versions = OnnxVersions(*(positive_int(k, opts[k]) if k in opts else None for k in ("opset_fp32", "opset_int8", "ir_version")))
        default = BenchSettings()
        bench = BenchSettings(
            threads=positive_int("threads", opts.get("threads", str(default.threads))),
            batch=positive_int("bench_batch", opts.get("bench_batch", str(default.batch))),
            repeats=positive_int("repeats", opts.get("repeats", str(default.repeats))),
            batch_repeats=positive_int("batch_repeats", opts.get("batch_repeats", str(default.batch_repeats))),
            deepsparse=choice("deepsparse", opts.get("deepsparse", default.deepsparse), DEEPSPARSE_MODES),
        ) if ns.benchmark else None
        return run_export(
            opts["checkpoint"], member=opts.get("member", "all"), fmt=opts.get("format", "qdq"), out=opts.get("out"),
            batch=positive_int("batch", opts.get("batch", "8")), seed=integer("seed", opts.get("seed", "0")),
            inputs=opts.get("inputs", "random"), versions=versions, benchmark=bench,
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
