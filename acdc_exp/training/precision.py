"""Numerics of a run: which autocast dtype it uses, its gradient scaler, resuming that scaler
across a change of mode, the memory format, and deterministic kernels.

``trainer.amp``: ``auto`` = fp16 with a GradScaler on CUDA, off on CPU; ``off``; ``bf16``
(no scaler: bf16 has fp32's exponent range); ``fp16`` (with a GradScaler, on CUDA or CPU).
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Dict, Optional

import torch

from acdc_exp.errors import ConfigError

AMP_MODES = ("auto", "off", "bf16", "fp16")
_DTYPES = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}
# configs written when trainer.amp was a bool
_LEGACY = {"true": "auto", "false": "off"}


@dataclass(frozen=True)
class Precision:
    device_type: str
    dtype: Optional[torch.dtype]  # None: full fp32

    @property
    def name(self) -> str:
        return {None: "off", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    def autocast(self) -> AbstractContextManager:
        return torch.autocast(self.device_type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """fp16 gradients underflow without loss scaling; bf16 and fp32 need none."""
        return torch.amp.GradScaler(self.device_type, enabled=self.dtype is torch.float16)


def resolve_precision(mode: Any, device: torch.device) -> Precision:
    name = _LEGACY.get(str(mode).lower(), str(mode))
    if name not in AMP_MODES:
        raise ConfigError(f"trainer.amp={mode!r} is unknown; allowed: {', '.join(AMP_MODES)}")
    if name == "auto":
        name = "fp16" if device.type == "cuda" else "off"
    return Precision(device.type, _DTYPES[name])


def full_precision(device: torch.device) -> Precision:
    """fp32, no autocast and no loss scaling (QAT's numerics)."""
    return Precision(device.type, None)


# cuBLAS is deterministic only with a fixed workspace; it reads this before its first call
CUBLAS_WORKSPACE = ":4096:8"


def configure_determinism(deterministic: bool, device: torch.device) -> None:
    """``trainer.deterministic=true``: deterministic kernels only (torch raises on an op that
    has none), cuBLAS with a fixed workspace, cuDNN without autotuning. Otherwise on CUDA
    let cuDNN pick the fastest convolution for each shape (the inputs' shapes are fixed)."""
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True)
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def channels_last_on(setting: Optional[bool], device: torch.device) -> bool:
    """``trainer.channels_last``: true/false as given; null = on CUDA only."""
    return device.type == "cuda" if setting is None else bool(setting)


def load_scaler_state(scaler: torch.amp.GradScaler, state: Optional[Dict[str, Any]]) -> Optional[str]:
    """Load a checkpoint's scaler state into ``scaler`` whatever AMP mode saved it. A scaler
    saved disabled (amp off or bf16) holds nothing: an enabled scaler then starts from its
    initial scale. Returns a note for the log when the modes differ, else None."""
    saved = dict(state or {})
    if scaler.is_enabled() and not saved:
        return "[resume] the checkpoint was saved without fp16 loss scaling: the GradScaler starts afresh"
    if not scaler.is_enabled():
        return "[resume] the checkpoint's fp16 loss-scaling state is not used (no fp16 now)" if saved else None
    scaler.load_state_dict(saved)
    return None
