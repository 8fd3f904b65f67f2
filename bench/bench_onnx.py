"""CPU speed of ResNet-50 exports: dense FP32, 85% block4-sparse FP32, our sparse INT8 (QDQ and
QOperator) and the onnxruntime quantizer's form of the same sparse model, in onnxruntime and
(where scripts/setup_deepsparse.sh set it up) DeepSparse, all timed in one run.

Random init (speed does not depend on the values), 224x224 inputs. The 52 layer1..layer4 convs
are pruned to 85% with 4-input-channel blocks; the INT8 model is that pruned model taken
through this package's QAT path (prepare, a few observing forward passes, torch.ao convert)
and exported as ``acdc-export`` does. The reference is ``onnxruntime.quantization.quantize_static``
on the sparse FP32 file (QOperator, uint8 activations / int8 weights, calibrated on the same
random batches) in its fastest form that DeepSparse 1.8 supports: Conv, Add and Relu quantized
(ReLU folded into QLinearConv / QLinearAdd), per-tensor weights. ``--forms`` adds the other
forms, which show what each choice is worth: Conv only, Conv+Relu, Conv+Add, per-channel
weights (ours and the quantizer's), and every op (QGemm, QLinearGlobalAveragePool). Timing and
the table are ``acdc_exp.deploy``'s (what ``acdc-export benchmark.enabled=true`` prints); speed-ups are
against dense FP32 in onnxruntime. ``--rounds N`` times everything N times, files interleaved,
and reports each row's median over the rounds (a shared machine drifts by ~10% over minutes).

    python bench/bench_onnx.py [--threads 2] [--batch 16] [--rounds 3] [--forms] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import onnx
import torch

from acdc_exp.deploy.export import export_fp32, export_int8
from acdc_exp.deploy.onnx_compat import stamp_ir_version
from acdc_exp.deploy.onnx_graph import weight_sparsity
from acdc_exp.deploy.report import DEEPSPARSE, ORT, BenchFile, BenchSettings, format_speed_table, speed_report
from acdc_exp.models import build_model
from acdc_exp.quantization.qat import QATController
from acdc_exp.sparsity.masks import compute_mask
from acdc_exp.sparsity.selection import select_parameters

PRUNED = ["layer*.conv*.weight", "layer*.downsample.0.weight"]
REFERENCE = "sparse_int8_ortquant.onnx"
OURS = "sparse_int8_qoperator.onnx"
REFERENCE_OPS = ["Conv", "Add", "Relu"]
# --forms: file name -> (ops the quantizer quantizes (None = all), per-channel weights)
QUANTIZER_FORMS = {
    "ortquant_conv.onnx": (["Conv"], False),
    "ortquant_conv_relu.onnx": (["Conv", "Relu"], False),
    "ortquant_conv_add.onnx": (["Conv", "Add"], False),
    "ortquant_per_channel.onnx": (REFERENCE_OPS, True),
    "ortquant_all_ops.onnx": (None, False),
}
OURS_PER_CHANNEL = "sparse_int8_qoperator_per_channel.onnx"
# the goals, 2 threads
GOALS = {
    "deepsparse int8 vs ORT dense FP32, batch N (VNNI CPUs)": (DEEPSPARSE, OURS, "speedup_batch", 6.0),
    "deepsparse int8 vs ORT dense FP32, batch 1 (VNNI CPUs)": (DEEPSPARSE, OURS, "speedup_b1", 3.0),
    "onnxruntime int8 vs ORT dense FP32, batch 1": (ORT, OURS, "speedup_b1", 3.0),
}


def _calibration_batches(n: int, batch: int = 8) -> List[np.ndarray]:
    gen = torch.Generator().manual_seed(1)
    return [torch.randn(batch, 3, 224, 224, generator=gen).numpy() for _ in range(n)]


def ort_quantizer_form(
    fp32: Path, out: Path, calibration: List[np.ndarray], ops: Optional[Sequence[str]] = REFERENCE_OPS, per_channel: bool = False
) -> None:
    """The onnxruntime static quantizer's QOperator form of ``fp32`` (see the docstring)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter([{"input": x} for x in calibration])

        def get_next(self):
            return next(self.it, None)

    pre = out.with_suffix(".pre.onnx")
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    quantize_static(
        str(pre),
        str(out),
        Batches(),
        quant_format=QuantFormat.QOperator,
        per_channel=per_channel,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=list(ops) if ops else None,
    )
    pre.unlink()
    # the pre-processor declares a dozen unused domains; DeepSparse refuses unknown ones
    onnx.save(stamp_ir_version(onnx.load(str(out))), str(out))


def _our_int8(model: torch.nn.Module, calibration: List[np.ndarray], per_channel: bool) -> torch.nn.Module:
    """This package's QAT path: prepare, observe the calibration batches, torch.ao convert."""
    ctrl = QATController(per_channel=per_channel)
    ctrl.prepare(model)
    model.train()
    with torch.no_grad():  # observers and BN statistics see a few batches
        for x in calibration:
            model(torch.from_numpy(x))
    return ctrl.convert(model)


def build(workdir: Path, sparsity: float, calib_batches: int, forms: bool = False) -> List[BenchFile]:
    torch.manual_seed(0)
    model = build_model("resnet50", num_classes=1000).eval()
    example = torch.randn(1, 3, 224, 224)
    files = [BenchFile("dense", "fp32", str(workdir / "dense_fp32.onnx"))]
    export_fp32(model, Path(files[0].path), example)
    with torch.no_grad():
        selected = select_parameters(model, PRUNED)
        for _, w in selected:
            w.mul_(compute_mask(w, sparsity, "block4"))
    assert len(selected) == 52, len(selected)
    sparse_fp32 = workdir / "sparse_fp32.onnx"
    export_fp32(model, sparse_fp32, example)
    files.append(BenchFile("sparse", "fp32", str(sparse_fp32)))
    calibration = _calibration_batches(calib_batches)
    pruned_state = {k: v.clone() for k, v in model.state_dict().items()}
    int8 = _our_int8(model, calibration, per_channel=False)
    for fmt in ("qdq", "qoperator"):
        path = workdir / f"sparse_int8_{fmt}.onnx"
        export_int8(int8, path, example, fmt)
        files.append(BenchFile("sparse", fmt, str(path)))
    ort_quantizer_form(sparse_fp32, workdir / REFERENCE, calibration)
    files.append(BenchFile("sparse", "ort-quantizer", str(workdir / REFERENCE)))
    if forms:
        for name, (ops, per_channel) in QUANTIZER_FORMS.items():
            ort_quantizer_form(sparse_fp32, workdir / name, calibration, ops, per_channel)
            files.append(BenchFile("sparse", "ort-quantizer", str(workdir / name)))
        again = build_model("resnet50", num_classes=1000).eval()
        again.load_state_dict(pruned_state)
        export_int8(_our_int8(again, calibration, per_channel=True), workdir / OURS_PER_CHANNEL, example, "qoperator")
        files.append(BenchFile("sparse", "qoperator", str(workdir / OURS_PER_CHANNEL)))
    return files


def median_over_rounds(reports: List[dict]) -> dict:
    """The first report, each row's numbers replaced by their median over all reports."""
    merged = json.loads(json.dumps(reports[0]))
    keys = ("latency_ms", "images_per_s", "speedup_b1", "speedup_batch")
    for i, row in enumerate(merged["rows"]):
        for key in keys:
            values = [r["rows"][i][key] for r in reports if r["rows"][i][key] is not None]
            row[key] = statistics.median(values) if values else None
            row[f"{key}_rounds"] = values
    merged["rounds"] = len(reports)
    return merged


def _pruned_sparsity(path: str) -> float:
    rows = [r for r in weight_sparsity(onnx.load(path)) if "layer" in r.layer]  # layer1..layer4, as the exporters name them
    return sum(r.zeros for r in rows) / max(1, sum(r.numel for r in rows))


def _row(report: dict, engine: str, file: str) -> Dict:
    return next((r for r in report["rows"] if r["engine"] == engine and r["file"] == file), {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16, help="throughput batch")
    parser.add_argument("--repeats", type=int, default=30, help="batch-1 runs (median)")
    parser.add_argument("--batch-repeats", type=int, default=5, help="batch-N runs (median)")
    parser.add_argument("--sparsity", type=float, default=0.85)
    parser.add_argument("--calib-batches", type=int, default=3)
    parser.add_argument("--deepsparse", default="auto", help="auto | off | required")
    parser.add_argument("--keep", help="keep the timed ONNX files in this directory")
    parser.add_argument("--rounds", type=int, default=1, help="time everything this many times; report medians")
    parser.add_argument("--forms", action="store_true", help="also time the other quantized forms (see above)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "onnx.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = BenchSettings(
        threads=args.threads, batch=args.batch, repeats=args.repeats, batch_repeats=args.batch_repeats, deepsparse=args.deepsparse
    ).check()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.keep) if args.keep else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        files = build(workdir, args.sparsity, args.calib_batches, args.forms)
        build_s = time.perf_counter() - t0
        rounds = []
        for i in range(args.rounds):
            rounds.append(speed_report(files, settings))
            print(f"round {i + 1}/{args.rounds} done", flush=True)
        report = median_over_rounds(rounds)
        about = {Path(f.path).name: (_pruned_sparsity(f.path), Path(f.path).stat().st_size / 2**20) for f in files}
        for r in report["rows"]:  # one row per file and engine
            r["pruned_layer_sparsity"], r["file_mb"] = about[r["file"]]
    goals = {}
    for label, (engine, file, metric, goal) in GOALS.items():
        got = _row(report, engine, file).get(metric)
        goals[label] = {"goal": goal, "got": got, "met": got is not None and got >= goal}
    ours, ref = _row(report, DEEPSPARSE, OURS), _row(report, DEEPSPARSE, REFERENCE)
    if ours.get("images_per_s") and ref.get("images_per_s"):
        goals["deepsparse: ours vs the ORT-quantizer form, batch N and 1"] = {
            "goal": 1.0,
            "got": [ours["images_per_s"] / ref["images_per_s"], ref["latency_ms"] / ours["latency_ms"]],
            "met": ours["images_per_s"] >= ref["images_per_s"] and ours["latency_ms"] <= ref["latency_ms"],
        }
    report.update(
        {
            "what": f"ResNet-50 224px, {100 * args.sparsity:.0f}% block4: dense/sparse FP32, sparse INT8 (ours, ORT quantizer)",
            "build_s": build_s,
            "load_avg_before": load_before,
            "load_avg_after": os.getloadavg(),
            "torch": torch.__version__,
            "goals": goals,
            "kept_in": args.keep,
        }
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(format_speed_table(report))
    print()
    for label, g in goals.items():
        print(f"goal {label} >= {g['goal']}: {g['got']} -> {'met' if g['met'] else 'NOT met'}")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
