"""Export a finished run's members to ONNX, check each file in onnxruntime, and optionally
time them (the speed report). ``acdc-export`` and the end of training (``trainer.export_onnx``)
both call ``run_export``.

Opsets and IR versions: by default FP32 files get opset 18 and int8 files opset 13, each with the
lowest IR version its opset needs, so every file loads in onnxruntime and in DeepSparse 1.8
(``deploy/onnx_compat.py``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

import torch
from omegaconf import DictConfig, OmegaConf

from acdc_exp import run_layout as layout
from acdc_exp.data import build_data
from acdc_exp.errors import CheckpointError, ConfigError, check_choice
from acdc_exp.loggers import opens_wandb_run
from acdc_exp.quantization.float_view import is_prepared
from acdc_exp.runs.evaluate import compose_for_member
from acdc_exp.runs.members import load_member, member_path, quantizer_for

# The ONNX side (onnx, onnxscript, onnxruntime) loads inside the functions that use it: this
# module is imported by every training run (runs/finish.py), and most runs do not export.
if TYPE_CHECKING:
    from acdc_exp.deploy.export import ExportedFile
    from acdc_exp.deploy.onnx_compat import OnnxVersions
    from acdc_exp.deploy.report import BenchSettings

INPUT_CHOICES = ("random", "val")
MEMBER_CHOICES = ("all", "dense", "final")


def export_from_config(cfg: DictConfig, overrides: Sequence[str] = ()) -> Dict[str, Any]:
    """``run_export`` as configs/export.yaml (composed, with the command line's ``overrides``) asks."""
    from acdc_exp.deploy.onnx_compat import OnnxVersions  # the ONNX stack only when exporting (module docstring)
    from acdc_exp.deploy.report import BenchSettings

    if OmegaConf.is_missing(cfg, "checkpoint"):
        raise ConfigError("checkpoint= is required (a run dir or a .pt file)")
    bench = cfg.benchmark
    if not bench.enabled:
        stray = [o for o in overrides if o.startswith("benchmark.") and not o.startswith("benchmark.enabled=")]
        if stray:
            raise ConfigError(f"{stray[0]} only applies with benchmark.enabled=true")
    settings = BenchSettings(
        threads=bench.threads,
        batch=bench.batch,
        repeats=bench.repeats,
        batch_repeats=bench.batch_repeats,
        deepsparse=bench.deepsparse,
    )
    return run_export(
        str(cfg.checkpoint),
        member=str(cfg.member),
        fmt=str(cfg.format),
        out=cfg.out,
        batch=int(cfg.batch),
        seed=int(cfg.seed),
        inputs=str(cfg.inputs),
        versions=OnnxVersions(**OmegaConf.to_container(cfg.onnx)),
        benchmark=settings if bench.enabled else None,
    )


def val_images(config: Dict[str, Any], n: int) -> torch.Tensor:
    """The first ``n`` validation images of the run's data, normalized as the model saw them."""
    cfg = compose_for_member([], config)
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
    checkpoint: str,
    *,
    member: str = "all",
    fmt: str = "qdq",
    out: str | None = None,
    batch: int = 8,
    seed: int = 0,
    inputs: str = "random",
    versions: Optional["OnnxVersions"] = None,
    benchmark: Optional["BenchSettings"] = None,
) -> Dict[str, Any]:
    """Export and verify; returns the report (also written to <out>/export_report.json).
    ``versions``: an ``OnnxVersions``; ``benchmark``: ``BenchSettings`` to time the files."""
    # the ONNX stack only when exporting (module docstring)
    from acdc_exp.deploy.export import FORMATS, export_member, format_table, warm_dynamo_exporter
    from acdc_exp.deploy.onnx_compat import OnnxVersions

    # bad settings fail before minutes of export, named as configs/export.yaml names them
    versions = (versions or OnnxVersions()).check()
    if benchmark is not None:
        benchmark.check("benchmark.")
    check_choice("member", member, MEMBER_CHOICES)
    check_choice("format", fmt, FORMATS)
    check_choice("inputs", inputs, INPUT_CHOICES)
    if batch < 1:
        raise ConfigError(f"batch={batch} must be a positive integer")
    src = Path(checkpoint)
    if src.is_file():
        targets = {src.stem if src.stem in ("dense", "final") else "final": str(src)}
        run_dir = layout.run_dir_of(src)
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
            files = " or ".join(layout.MEMBER_FILES[name] for name in names)
            raise CheckpointError(f"checkpoint={checkpoint!r} has no {files} under {layout.CHECKPOINTS}/")
        run_dir = src
    out_dir = Path(out) if out else run_dir / layout.EXPORT
    warm_dynamo_exporter()  # before data loaders run (see its docstring)
    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    files = []
    config: Dict[str, Any] = {}
    res = 224
    images = None  # inputs=val: the run's images, read once for every member (one run, one data config)
    for name, path in targets.items():
        model, _, config = load_member(path, name)
        res = int(config.get("data", {}).get("val_res", 224))
        # a QAT member converts to int8 for its run's engine; a float one has none to give
        backend = {"backend": quantizer_for(config).backend} if is_prepared(model) else {}
        if inputs == "val" and images is None:
            images = val_images(config, batch)
        files += export_member(
            model, name, out_dir, res=res, fmt=fmt, batch=batch, seed=seed, inputs=images, versions=versions, **backend
        )
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
    files: List["ExportedFile"], settings: "BenchSettings", *, res: int, out_dir: Path, run_dir: Path, config: Dict[str, Any]
) -> Dict[str, Any]:
    """Time the exported files (see the module docstring); W&B when the run logged there."""
    # onnxruntime and wandb only when benchmarking
    from acdc_exp.deploy.report import BenchFile, format_speed_table, speed_report
    from acdc_exp.deploy.wandb_report import log_speed_report

    settings = dataclasses.replace(settings, res=res)
    speed = speed_report([BenchFile(f.member, f.kind, f.path) for f in files], settings)
    (out_dir / "speed_report.json").write_text(json.dumps(speed, indent=2))
    summary_path = run_dir / layout.SUMMARY
    run_id = json.loads(summary_path.read_text()).get("wandb_run_id") if summary_path.is_file() else None
    logger_cfg = config["logger"]
    speed["wandb"] = None
    if run_id and opens_wandb_run(logger_cfg):
        speed["wandb"] = {
            "run_id": run_id,
            "sync_file": log_speed_report(speed, run_dir=run_dir, run_id=run_id, logger_cfg=logger_cfg),
        }
    speed["table"] = format_speed_table(speed)
    return speed
