"""The speed report of a run's exported files: batch-1 latency and batch-N throughput in
onnxruntime and, where it is set up, DeepSparse; speed-ups against the dense member's FP32 file
in onnxruntime (what a user would run without this project)."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from acdc_exp.deploy.deepsparse_runner import deepsparse_python, run_deepsparse
from acdc_exp.deploy.ort_timing import Timing, time_ort
from acdc_exp.errors import ConfigError, check_choice
from acdc_exp.machine import describe

ORT = "onnxruntime"
DEEPSPARSE = "deepsparse"
DEEPSPARSE_MODES = ("auto", "off", "required")


@dataclass(frozen=True)
class BenchSettings:
    threads: int = 2
    batch: int = 16  # the throughput batch
    repeats: int = 30  # batch-1 runs; the median is reported
    batch_repeats: int = 5  # batch-N runs
    warmup: int = 3
    res: int = 224
    seed: int = 0
    deepsparse: str = "auto"  # auto: where set up; off; required: fail without it

    def check(self, prefix: str = "") -> "BenchSettings":
        """Every field in range; errors name the key as ``prefix`` + field (``benchmark.threads``)."""
        for name in ("threads", "batch", "repeats", "batch_repeats", "res"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{prefix}{name}={getattr(self, name)} must be a positive integer")
        if self.warmup < 0:
            raise ConfigError(f"{prefix}warmup={self.warmup} must be >= 0")
        check_choice(f"{prefix}deepsparse", self.deepsparse, DEEPSPARSE_MODES)
        if self.deepsparse == "required" and deepsparse_python() is None:
            raise ConfigError(f"{prefix}deepsparse=required but DeepSparse is not set up; run scripts/setup_deepsparse.sh")
        return self


@dataclass(frozen=True)
class BenchFile:
    member: str  # dense | final
    kind: str  # fp32 | qdq | qoperator
    path: str


@dataclass
class SpeedRow:
    file: str
    member: str
    kind: str
    engine: str
    supported: Optional[float] = None  # DeepSparse: fraction of ops its sparse runtime runs
    latency_ms: Optional[float] = None  # batch 1, median
    images_per_s: Optional[float] = None  # batch N, from the median batch time
    speedup_b1: Optional[float] = None
    speedup_batch: Optional[float] = None
    error: Optional[str] = None


def _row(f: BenchFile, engine: str, b1: Timing, bn: Timing, supported: Optional[float] = None) -> SpeedRow:
    return SpeedRow(Path(f.path).name, f.member, f.kind, engine, supported, b1.latency_ms, bn.images_per_s)


def _ort_rows(files: Sequence[BenchFile], s: BenchSettings) -> List[SpeedRow]:
    rows = []
    for f in files:
        runs = [(1, s.repeats), (s.batch, s.batch_repeats)]
        b1, bn = time_ort(Path(f.path), threads=s.threads, runs=runs, warmup=s.warmup, res=s.res, seed=s.seed)
        rows.append(_row(f, ORT, b1, bn))
    return rows


def _deepsparse_rows(files: Sequence[BenchFile], s: BenchSettings) -> tuple[List[SpeedRow], Dict[str, Any]]:
    batches = sorted({1, s.batch})
    repeats = {str(b): (s.repeats if b == 1 else s.batch_repeats) for b in batches}
    answer = run_deepsparse(
        {
            "files": [f.path for f in files],
            "threads": s.threads,
            "batches": batches,
            "repeats": repeats,
            "warmup": {str(b): s.warmup for b in batches},
            "res": s.res,
            "seed": s.seed,
        }
    )
    rows = []
    for f in files:
        got = answer["files"][f.path]
        if "error" in got:
            rows.append(SpeedRow(Path(f.path).name, f.member, f.kind, DEEPSPARSE, error=got["error"]))
            continue
        timing = {b: Timing(int(b), got["batches"][b]["times_s"]) for b in got["batches"]}
        rows.append(_row(f, DEEPSPARSE, timing["1"], timing[str(s.batch)], got["fraction_supported"]))
    return rows, {"version": answer["deepsparse"], "cpu": answer["cpu"]}


def speed_report(files: Sequence[BenchFile], settings: BenchSettings) -> Dict[str, Any]:
    """Time every file in each engine; the baseline is the dense member's FP32 file in
    onnxruntime (the first FP32 file when the run has no dense member)."""
    s = settings.check()
    fp32 = [f for f in files if f.kind == "fp32"]
    if not fp32:
        raise ConfigError("the speed report needs an FP32 file as its baseline; none was exported")
    base_file = next((f for f in fp32 if f.member == "dense"), fp32[0])
    rows = _ort_rows(files, s)
    deepsparse: Dict[str, Any] = {"status": "off" if s.deepsparse == "off" else "not set up (scripts/setup_deepsparse.sh)"}
    if s.deepsparse != "off" and deepsparse_python() is not None:
        try:
            ds_rows, info = _deepsparse_rows(files, s)
            rows += ds_rows
            deepsparse = dict(info, status="ran")
        except RuntimeError as exc:
            if s.deepsparse == "required":
                raise
            deepsparse = {"status": f"failed: {exc}"}
    base = next(r for r in rows if r.engine == ORT and r.file == Path(base_file.path).name)
    for r in rows:
        if r.error is None:
            r.speedup_b1 = base.latency_ms / r.latency_ms
            r.speedup_batch = r.images_per_s / base.images_per_s
    return {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "settings": asdict(s),
        "baseline": {"file": base.file, "engine": ORT},
        "deepsparse": deepsparse,
        "machine": describe(),
        "rows": [asdict(r) for r in rows],
    }


def _num(value: Optional[float], fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def format_speed_table(report: Dict[str, Any]) -> str:
    """Markdown table plus the lines that say what it was measured on."""
    s = report["settings"]
    m = report["machine"]
    n = s["batch"]
    lines = [
        f"### Speed ({s['threads']} threads; batch 1: median of {s['repeats']}, batch {n}: median of {s['batch_repeats']})",
        f"CPU: {m.get('cpu_model')} [{', '.join(m.get('cpu_flags') or []) or 'no AVX2/AVX-512 flags'}]; "
        f"baseline: {report['baseline']['file']} in {report['baseline']['engine']}; DeepSparse: {report['deepsparse']['status']}",
        "",
        f"| file | engine | ops supported | batch 1 ms | speed-up | batch {n} img/s | speed-up |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        if r["error"]:
            lines.append(f"| {r['file']} | {r['engine']} | does not load: {r['error'][:120]} | | | | |")
            continue
        sup = "-" if r["supported"] is None else f"{100 * r['supported']:.0f}%"
        lines.append(
            f"| {r['file']} | {r['engine']} | {sup} | {_num(r['latency_ms'], '.2f')} | {_num(r['speedup_b1'], '.2f')}x | "
            f"{_num(r['images_per_s'], '.1f')} | {_num(r['speedup_batch'], '.2f')}x |"
        )
    return "\n".join(lines)
