"""Run an exported file in onnxruntime and compare it with the PyTorch model it came from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from acdc_exp.quantization.qconfig import quiet_ao

# agreement bounds with the PyTorch model the file was exported from:
FP32_ATOL = 1e-4  # max |logit difference| <= FP32_ATOL * max(1, max |logit|)
# int8 engines round requantizations (adds, pools) slightly differently from torch's int8
# kernels: the file passes when max |difference| <= INT8_RTOL * max |logit|, or when it is
# within twice the quantization noise of the model itself (torch int8 vs its fake-quant
# simulation), which is what an untrained net on random inputs shows. Top-1 agreement is
# reported; on random inputs with near-tied logits it is not a pass criterion.
INT8_RTOL = 0.1
INT8_NOISE_FACTOR = 2.0


def ort_session(path: Path, threads: int = 1, optimize: bool = True) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


@dataclass
class Agreement:
    reference: str
    batch: int
    max_abs_diff: float
    max_abs_logit: float
    top1_agreement: float
    bound: str
    ok: bool
    dynamic_batch_ok: bool = True
    # int8 only: max |torch int8 - torch fake-quant|, the model's own quantization noise
    quantization_noise: Optional[float] = None

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def check_agreement(
    path: Path, reference: nn.Module, inputs: torch.Tensor, *, ref_name: str, noise_reference: Optional[nn.Module] = None
) -> Agreement:
    """Run the file in onnxruntime and compare with ``reference`` on ``inputs``; the batch is
    also split in two uneven runs to prove the batch dimension is dynamic. A quantized file
    passes ``noise_reference`` (the fake-quant model) to set its noise floor."""
    sess = ort_session(path)
    name = sess.get_inputs()[0].name
    x = inputs.numpy()
    got = sess.run(None, {name: x})[0]
    with torch.no_grad(), quiet_ao():
        want = reference.eval()(inputs).float().numpy()
        other = None if noise_reference is None else noise_reference.eval()(inputs).float().numpy()
    k = max(1, x.shape[0] // 3)
    split = np.concatenate([sess.run(None, {name: x[:k]})[0], sess.run(None, {name: x[k:]})[0]])
    diff = float(np.abs(got - want).max())
    scale = float(np.abs(want).max())
    agree = float((got.argmax(1) == want.argmax(1)).mean())
    noise = None
    if other is None:
        ok = diff <= FP32_ATOL * max(1.0, scale)
        bound = f"max|diff| <= {FP32_ATOL} * max(1, max|logit|)"
    else:
        noise = float(np.abs(want - other).max())
        ok = diff <= max(INT8_RTOL * scale, INT8_NOISE_FACTOR * noise)
        bound = f"max|diff| <= max({INT8_RTOL} * max|logit|, {INT8_NOISE_FACTOR} * quantization noise {noise:.3g})"
    dyn = bool(np.allclose(split, got, atol=1e-5, rtol=1e-5))
    return Agreement(ref_name, int(x.shape[0]), diff, scale, agree, bound, bool(ok), dyn, noise)
