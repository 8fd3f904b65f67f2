"""ONNX export of the run's members, checked with onnxruntime.

Exporters (torch 2.14):
- FP32 members (dense, sparse, and the float weights of a QAT model) go through the default
  dynamo exporter (``torch.export`` based).
- Quantized members: the QAT model is converted to int8 with ``torch.ao.quantization.convert``
  (the same model ``final_int8.pt`` holds) and exported with the TorchScript exporter
  (``dynamo=False``), the only one that translates torch.ao's quantized modules; it emits
  QuantizeLinear/DequantizeLinear around float Conv ops (QDQ). ``tidy_qdq`` folds its constant
  plumbing so each weight is an int8 initializer. ``format=qoperator`` then rewrites Conv
  patterns into QLinearConv with the same QAT scales (``to_qoperator``): no re-calibration.
  torch.ao's fake-quant modules cannot be traced by ``torch.export`` (data-dependent flags),
  hence no dynamo path for them.
Opsets and IR versions per format (defaults, ranges, user overrides) are ``onnx_compat``'s: the
defaults load in onnxruntime and in DeepSparse 1.8.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple, TypeVar

import onnx
import torch
import torch.ao.quantization as tq
from torch import nn

from acdc_exp.deploy.onnx_check import Agreement, check_agreement
from acdc_exp.deploy.onnx_compat import OnnxVersions, pool_from_spatial_mean, stamp_ir_version
from acdc_exp.deploy.onnx_graph import tidy_qdq, weight_sparsity
from acdc_exp.deploy.qoperator import to_qoperator
from acdc_exp.errors import ConfigError
from acdc_exp.quantization.float_view import float_view, is_prepared
from acdc_exp.quantization.qat import convert_to_int8
from acdc_exp.quantization.qconfig import quiet_ao

T = TypeVar("T")
FORMATS = ("qdq", "qoperator")


def _dynamic_batch_axes() -> Dict[str, Dict[int, str]]:
    return {"input": {0: "batch"}, "logits": {0: "batch"}}


_AST_BUG = "AST constructor recursion depth mismatch"


def _retry_ast_bug(fn: Callable[[], T], attempts: int = 3) -> T:
    """Run ``fn``, retrying on CPython 3.11 < 3.11.8's spurious ``SystemError: AST constructor
    recursion depth mismatch`` (python/cpython#106905, fixed by #113035), which onnxscript's
    source parsing hits now and then in long processes such as a test session."""
    for attempt in range(attempts):
        try:
            return fn()
        except SystemError as exc:
            if _AST_BUG not in str(exc) or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def warm_dynamo_exporter() -> None:
    """Import onnxscript's torch op library (its first import parses hundreds of functions
    with ``ast``) before data loaders run, and retry it past the CPython AST bug above."""

    def load() -> None:
        import onnxscript.function_libs.torch_lib.ops  # noqa: F401

    _retry_ast_bug(load)


def export_fp32(model: nn.Module, path: Path, example: torch.Tensor, versions: OnnxVersions = OnnxVersions()) -> onnx.ModelProto:
    """Dynamo export with a dynamic batch dimension at the fp32 opset, made loadable by older
    engines (``onnx_compat``); the torch exporter's progress lines are captured (they would
    interleave with the CLI's table)."""
    model = float_view(model)
    opset = versions.check().opset("fp32")
    warm_dynamo_exporter()
    batch = torch.export.Dim("batch", min=1)
    sink = io.StringIO()

    def run() -> None:
        with torch.no_grad(), quiet_ao(), contextlib.redirect_stdout(sink):
            torch.onnx.export(
                model,
                (example,),
                str(path),
                dynamo=True,
                external_data=False,
                opset_version=opset,
                dynamic_shapes=({0: batch},),
                input_names=["input"],
                output_names=["logits"],
            )

    _retry_ast_bug(run)
    proto = stamp_ir_version(pool_from_spatial_mean(onnx.load(str(path))), versions.ir_version)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return proto


def export_int8(
    int8_model: nn.Module, path: Path, example: torch.Tensor, fmt: str = "qdq", versions: OnnxVersions = OnnxVersions()
) -> onnx.ModelProto:
    """TorchScript export of a converted int8 model, tidied, optionally rewritten to QOperator."""
    if fmt not in FORMATS:
        raise ConfigError(f"format={fmt!r} is unknown; allowed: {', '.join(FORMATS)}")
    opset = versions.check().opset("int8")
    buf = io.BytesIO()
    sink = io.StringIO()
    with torch.no_grad(), quiet_ao(), contextlib.redirect_stdout(sink):
        torch.onnx.export(
            int8_model,
            (example,),
            buf,
            dynamo=False,
            opset_version=opset,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes=_dynamic_batch_axes(),
        )
    proto = tidy_qdq(onnx.load_from_string(buf.getvalue()))
    if fmt == "qoperator":
        proto = to_qoperator(proto)
    stamp_ir_version(proto, versions.ir_version)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return proto


@dataclass
class ExportedFile:
    member: str
    kind: str  # fp32 | qdq | qoperator
    path: str
    opset: int
    ir_version: int
    agreement: Agreement
    layers: List[dict] = field(default_factory=list)
    model_sparsity: Dict[str, float] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d["agreement"] = self.agreement.as_dict()
        return d


def _opset(proto: onnx.ModelProto) -> int:
    return max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)


PER_CHANNEL_SCHEMES = (torch.per_channel_affine, torch.per_channel_symmetric)


def _layer_weights(model: nn.Module) -> Iterator[Tuple[str, torch.Tensor]]:
    """(layer name, weight) of every conv/linear layer, float or quantized."""
    for name, module in model.named_modules():
        w = getattr(module, "weight", None)
        if callable(w):  # quantized modules expose weight()
            w = w()
        if isinstance(w, torch.Tensor) and w.dim() in (2, 4):
            yield name, w


def torch_layer_sparsity(model: nn.Module) -> Dict[str, float]:
    """Zero fraction of each conv/linear weight as PyTorch holds it (int8 models: int values
    equal to the zero point), keyed by layer name."""
    out: Dict[str, float] = {}
    for name, w in _layer_weights(model):
        if w.is_quantized:
            ints = w.int_repr()
            if w.qscheme() in PER_CHANNEL_SCHEMES:
                zp = w.q_per_channel_zero_points().reshape((-1,) + (1,) * (w.dim() - 1))
            else:
                zp = w.q_zero_point()
            zeros = (ints == zp).sum().item()
        else:
            zeros = (w == 0).sum().item()
        out[name] = zeros / w.numel()
    return out


# measured (README, deployment): DeepSparse 1.8 runs 7% of a per-channel QLinearConv ResNet-50
PER_CHANNEL_NOTE = (
    "per-channel int8 weights: DeepSparse 1.8 supports only per-tensor QLinearConv and runs this "
    "file on its dense fallback; train with quantization.per_channel=false for a sparse engine"
)


def has_per_channel_weights(int8_model: nn.Module) -> bool:
    return any(w.is_quantized and w.qscheme() in PER_CHANNEL_SCHEMES for _, w in _layer_weights(int8_model))


def _fake_quant_eval(model: nn.Module) -> nn.Module:
    ref = copy.deepcopy(model).cpu().eval()
    ref.apply(tq.disable_observer)  # evaluating must not move the observed ranges
    return ref


def export_member(
    model: nn.Module,
    member: str,
    out_dir: Path,
    *,
    res: int,
    fmt: str = "qdq",
    backend: str = "x86",
    batch: int = 8,
    seed: int = 0,
    inputs: Optional[torch.Tensor] = None,
    versions: OnnxVersions = OnnxVersions(),
) -> List[ExportedFile]:
    """Export one member: FP32 always; for a QAT-prepared model also the int8 file in ``fmt``.
    ``inputs`` (normalized images) check the files; default: ``batch`` random N(0, 1) images."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if inputs is None:
        gen = torch.Generator().manual_seed(seed)
        inputs = torch.randn(batch, 3, res, res, generator=gen)
    inputs = inputs.float().cpu().contiguous()
    example = inputs[:2].clone()
    files: List[ExportedFile] = []
    fview = float_view(model)
    fp32_path = out_dir / f"{member}_fp32.onnx"
    proto = export_fp32(fview, fp32_path, example, versions)
    files.append(
        ExportedFile(
            member,
            "fp32",
            str(fp32_path),
            _opset(proto),
            proto.ir_version,
            check_agreement(fp32_path, fview, inputs, ref_name=f"{member} float (PyTorch)"),
            [r.as_dict() for r in weight_sparsity(proto)],
            torch_layer_sparsity(fview),
        )
    )
    if is_prepared(model):
        int8 = convert_to_int8(model, backend)
        q_path = out_dir / f"{member}_int8_{fmt}.onnx"
        qproto = export_int8(int8, q_path, example, fmt, versions)
        files.append(
            ExportedFile(
                member,
                fmt,
                str(q_path),
                _opset(qproto),
                qproto.ir_version,
                check_agreement(
                    q_path, int8, inputs, ref_name=f"{member} int8 (torch.ao convert)", noise_reference=_fake_quant_eval(model)
                ),
                [r.as_dict() for r in weight_sparsity(qproto)],
                torch_layer_sparsity(int8),
                [PER_CHANNEL_NOTE] if fmt == "qoperator" and has_per_channel_weights(int8) else [],
            )
        )
    return files


def format_table(files: List[ExportedFile]) -> str:
    """Markdown: one block per file with its agreement and per-layer sparsity."""
    lines: List[str] = []
    for f in files:
        a = f.agreement
        lines.append(f"### {Path(f.path).name} ({f.kind}, opset {f.opset}, IR {f.ir_version})")
        lines.append(
            f"onnxruntime vs {a.reference}: max|diff| {a.max_abs_diff:.3g} (max|logit| {a.max_abs_logit:.3g}), "
            f"top-1 agreement {100 * a.top1_agreement:.1f}% on {a.batch} inputs, dynamic batch "
            f"{'ok' if a.dynamic_batch_ok else 'FAILED'} -> {'PASS' if a.ok and a.dynamic_batch_ok else 'FAIL'} ({a.bound})"
        )
        lines.extend(f"note: {n}" for n in f.notes)
        lines.append("")
        lines.append("| layer | op | dtype | shape | sparsity (ONNX) | sparsity (PyTorch) |")
        lines.append("|---|---|---|---|---:|---:|")
        total = zeros = 0
        for row in f.layers:
            ref = f.model_sparsity.get(row["layer"])
            ref_s = "-" if ref is None else f"{100 * ref:.2f}%"
            lines.append(
                f"| {row['layer']} | {row['op']} | {row['dtype']} | {'x'.join(map(str, row['shape']))} | "
                f"{100 * row['sparsity']:.2f}% | {ref_s} |"
            )
            total += row["numel"]
            zeros += row["zeros"]
        overall = zeros / total if total else math.nan
        lines.append(f"| all weights | | | {total:,} | {100 * overall:.2f}% | |")
        lines.append("")
    return "\n".join(lines)
