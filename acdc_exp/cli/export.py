"""``acdc-export``: ONNX files of a run's members, checked with onnxruntime.

    acdc-export checkpoint=runs/digits_acdc/2024-..            # dense + final, QDQ int8
    acdc-export checkpoint=RUN member=final format=qoperator out=onnx/
    acdc-export checkpoint=RUN/checkpoints/final.pt

Writes <member>_fp32.onnx for every member and, for a member saved during QAT,
<member>_int8_<format>.onnx; prints the agreement with PyTorch and per-layer weight
sparsity as read back from each file, and writes export_report.json beside them.
Verification inputs: ``inputs=random`` (default) uses ``batch`` N(0, 1) images at the run's
validation resolution; ``inputs=val`` uses the first ``batch`` validation images of the run's
own data config (the dataset must be available).
"""
from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path
from typing import Any, Dict, List

from acdc_exp.cli.common import die, guarded
from acdc_exp.cli.kvargs import choice, integer, positive_int, split_args
from acdc_exp.errors import CheckpointError, ConfigError

PROG = "acdc-export"
KEYS = ("checkpoint", "member", "format", "out", "batch", "seed", "inputs")
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
    inputs: str = "random",
) -> Dict[str, Any]:
    """Export and verify; returns the report (also written to <out>/export_report.json)."""
    import torch

    from acdc_exp.quantization.export import FORMATS, export_member, format_table, warm_dynamo_exporter
    from acdc_exp.quantization.restore import load_member, member_path

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
    for name, path in targets.items():
        model, _, config = load_member(path, "final" if name == "final" else name)
        res = int(config.get("data", {}).get("val_res", 224))
        backend = str(config.get("quantization", {}).get("backend", "x86"))
        images = _val_images(config, batch) if inputs == "val" else None
        files += export_member(model, name, out_dir, res=res, fmt=fmt, backend=backend, batch=batch, seed=seed, inputs=images)
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
    return report


def main(argv: List[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("args", nargs="*", help="checkpoint=PATH member=all|dense|final format=qdq|qoperator out=DIR batch=N seed=N inputs=random|val")
    ns = parser.parse_args(argv)

    def go() -> Dict[str, Any]:
        opts, rest = split_args(ns.args, KEYS)
        if rest:
            raise ConfigError(f"unknown argument {rest[0]!r}; allowed keys: {', '.join(KEYS)}")
        if "checkpoint" not in opts:
            raise ConfigError("checkpoint= is required (a run dir or a .pt file)")
        return run_export(
            opts["checkpoint"], member=opts.get("member", "all"), fmt=opts.get("format", "qdq"), out=opts.get("out"),
            batch=positive_int("batch", opts.get("batch", "8")), seed=integer("seed", opts.get("seed", "0")),
            inputs=opts.get("inputs", "random"),
        )

    report = guarded(PROG, go)
    print(report["table"])
    print(f"report: {Path(report['out_dir']) / 'export_report.json'}")
    if not report["all_ok"]:
        die(PROG, "an exported file disagrees with PyTorch beyond its bound (see the table)", code=1)


if __name__ == "__main__":
    main()
