"""The QAT qconfig (SparseML's default scheme) and the quantized-engine switch.

Activations: quint8 [0, 255], asymmetric (affine), per tensor, moving-average min/max.
Weights: qint8 [-128, 127], symmetric, per tensor (or per output channel). Symmetric weights
have zero point 0, so a pruned weight (exactly 0.0) fake-quantizes to exactly 0.0 and becomes
the int8 value 0 after conversion: masks survive quantization bit-exactly.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.ao.quantization as tq

from acdc_exp.errors import ConfigError

BACKENDS = ("x86", "fbgemm", "qnnpack", "onednn")


def build_qconfig(*, per_channel: bool = False, reduce_range: bool = False, num_bits: int = 8) -> tq.QConfig:
    if num_bits != 8:
        # int8 kernels are what convert() and ONNX QLinear* ops offer; fewer bits would only be
        # simulated, and the int8 model would silently hold 8-bit values
        raise ConfigError(f"quantization.num_bits={num_bits} is not supported; allowed: 8")
    act_max = 127 if reduce_range else 255
    activation = tq.FakeQuantize.with_args(
        observer=tq.MovingAverageMinMaxObserver,
        quant_min=0,
        quant_max=act_max,
        dtype=torch.quint8,
        qscheme=torch.per_tensor_affine,
    )
    if per_channel:
        weight = tq.FakeQuantize.with_args(
            observer=tq.MovingAveragePerChannelMinMaxObserver,
            quant_min=-128,
            quant_max=127,
            dtype=torch.qint8,
            qscheme=torch.per_channel_symmetric,
            ch_axis=0,
        )
    else:
        weight = tq.FakeQuantize.with_args(
            observer=tq.MovingAverageMinMaxObserver,
            quant_min=-128,
            quant_max=127,
            dtype=torch.qint8,
            qscheme=torch.per_tensor_symmetric,
        )
    return tq.QConfig(activation=activation, weight=weight)


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ConfigError(f"quantization.backend={backend!r} is unknown; allowed: {', '.join(BACKENDS)}")
    if backend not in torch.backends.quantized.supported_engines:
        have = ", ".join(e for e in torch.backends.quantized.supported_engines if e != "none")
        raise ConfigError(f"quantization.backend={backend!r} is not built into this torch; available: {have}")
    return backend


def use_engine(backend: str) -> None:
    """Switch torch's int8 engine (a process-wide setting) to ``backend``."""
    torch.backends.quantized.engine = check_backend(backend)


@contextmanager
def quiet_ao() -> Iterator[None]:
    """torch.ao.quantization warns on every call that it is deprecated (in favour of torchao,
    not installed here) and that unobserved observers give default qparams; both are noise."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit\..*")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.ao\..*")
        warnings.filterwarnings("ignore", message=r".*quantize_per_tensor.*deprecated.*")
        warnings.filterwarnings("ignore", message=r".*must run observer before calling calculate_qparams.*")
        yield
