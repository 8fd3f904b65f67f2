"""The QAT qconfig (SparseML's default scheme) and the quantized-engine switch.

Activations: quint8 [0, 255], asymmetric (affine), per tensor, moving-average min/max.
Weights: qint8 [-128, 127], symmetric, per tensor (or per output channel). Symmetric weights
have zero point 0, so a pruned weight (exactly 0.0) fake-quantizes to exactly 0.0 and becomes
the int8 value 0 after conversion: masks survive quantization bit-exactly.

Both keep their enable flags as tensors that the computation reads, so a step costs no host
read of them (torch's eager FakeQuantize checks both flags in Python every forward: a GPU sync
each, and a graph break under torch.compile). Activations use torch's fused observer +
fake-quant kernel. Weights cannot: that kernel goes affine on a channel that is one-signed or
all zeros (zero point -128 or 127; common in pruned layers), which would turn pruned zeros
into nonzero int8 codes; they run the same moving-average observer in tensor ops instead.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.ao.quantization as tq

from acdc_exp.errors import ConfigError

BACKENDS = ("x86", "fbgemm", "qnnpack", "onednn")


class FusedFakeQuantize(tq.FusedMovingAvgObsFakeQuantize):
    """torch's fused moving-average observer + fake quantization (a FakeQuantize: the same
    buffers and state-dict keys, ``tq.disable_observer`` works), converting with the qparams it
    fake-quantized with: convert calls ``calculate_qparams``, which in torch recomputes them
    from min/max by the observer's formula, not always the kernel's."""

    def calculate_qparams(self) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        return self.scale.detach().clone(), self.zero_point.detach().clone()

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        # torch's own forward, but here: torch.compile skips (graph-breaks on) every function
        # defined under torch.ao.quantization, and traces this one
        obs = self.activation_post_process
        return torch.fused_moving_avg_obs_fake_quant(
            X,
            self.observer_enabled,
            self.fake_quant_enabled,
            obs.min_val,
            obs.max_val,
            self.scale,
            self.zero_point,
            obs.averaging_constant,
            obs.quant_min,
            obs.quant_max,
            self.ch_axis,
            self.is_per_channel,
            self.is_symmetric_quant,
        )


class SymmetricWeightFakeQuantize(FusedFakeQuantize):
    """Symmetric weight fake quantization, zero point always 0: the observer's moving-average
    min/max and max|x| / 127.5 scale (as MovingAverage*MinMaxObserver), written as tensor ops
    gated by the flag tensors. Per channel along ``ch_axis`` or per tensor."""

    def ensure_shape(self, weight: torch.Tensor) -> None:
        """Size the per-channel buffers for ``weight`` (prepare does it, so no compiled step
        sees a resize; a checkpoint's load resizes them too)."""
        if not self.is_per_channel:
            return
        n = weight.shape[self.ch_axis]
        obs = self.activation_post_process
        if obs.min_val.numel() != n:
            obs.min_val.resize_(n).fill_(float("inf"))
            obs.max_val.resize_(n).fill_(float("-inf"))
        if self.scale.numel() != n:
            self.scale.resize_(n).fill_(1.0)
            self.zero_point.resize_(n).zero_()

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        self.ensure_shape(X)
        obs = self.activation_post_process
        with torch.no_grad():
            if self.is_per_channel:
                lo, hi = X.detach().movedim(self.ch_axis, 0).flatten(1).aminmax(dim=1)
            else:
                lo, hi = X.detach().aminmax()
            c = obs.averaging_constant
            first = torch.isinf(obs.min_val)  # never observed: take this batch's range
            new_lo = torch.where(first, lo, obs.min_val + c * (lo - obs.min_val))
            new_hi = torch.where(first, hi, obs.max_val + c * (hi - obs.max_val))
            on = self.observer_enabled[0].bool()  # a 0-d view, no host read
            obs.min_val.copy_(torch.where(on, new_lo, obs.min_val))
            obs.max_val.copy_(torch.where(on, new_hi, obs.max_val))
            max_abs = torch.maximum(-obs.min_val, obs.max_val)
            half_range = (obs.quant_max - obs.quant_min) / 2
            scale = torch.maximum(max_abs / half_range, obs.eps)  # eps a tensor: no host read
            # unobserved (min/max still infinite): torch's default scale 1.0
            self.scale.copy_(torch.where(torch.isfinite(max_abs), scale, torch.ones_like(scale)).reshape(self.scale.shape))
        if self.is_per_channel:
            fq = torch.fake_quantize_per_channel_affine(
                X, self.scale, self.zero_point, self.ch_axis, obs.quant_min, obs.quant_max
            )
        else:
            fq = torch.fake_quantize_per_tensor_affine(X, self.scale, self.zero_point, obs.quant_min, obs.quant_max)
        return torch.where(self.fake_quant_enabled.bool(), fq, X)


def build_qconfig(*, per_channel: bool = False, reduce_range: bool = False, num_bits: int = 8) -> tq.QConfig:
    """Activations quint8 [0, 255] ([0, 127] with ``reduce_range``), weights qint8 symmetric."""
    if num_bits != 8:
        # int8 kernels are what convert() and ONNX QLinear* ops offer; fewer bits would only be
        # simulated, and the int8 model would silently hold 8-bit values
        raise ConfigError(f"quantization.num_bits={num_bits} is not supported; allowed: 8")
    act_max = 127 if reduce_range else 255
    activation = FusedFakeQuantize.with_args(
        observer=tq.MovingAverageMinMaxObserver,
        quant_min=0,
        quant_max=act_max,
        dtype=torch.quint8,
        qscheme=torch.per_tensor_affine,
    )
    if per_channel:
        weight = SymmetricWeightFakeQuantize.with_args(
            observer=tq.MovingAveragePerChannelMinMaxObserver,
            quant_min=-128,
            quant_max=127,
            dtype=torch.qint8,
            qscheme=torch.per_channel_symmetric,
            ch_axis=0,
        )
    else:
        weight = SymmetricWeightFakeQuantize.with_args(
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
