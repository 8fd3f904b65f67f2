"""Layer by layer: does the converted int8 model compute what its fake-quantized QAT model
computes? Both quantize every activation to the same grid, so on one batch each int8 output
should sit within a step or so of the fake-quantized one; a layer that parts by many steps
names where conversion or the int8 kernels differ (saturation, folding, scales)."""

from __future__ import annotations

from typing import Any, Dict, List

import torch
from torch import nn


def _outputs(model: nn.Module, names: List[str], x: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Outputs (dequantized, float) of the named modules for one forward pass; for a QAT
    module the output after its activation fake-quantizer, as the next layer sees it."""
    seen: Dict[str, torch.Tensor] = {}
    handles = []
    for name in names:

        def hook(_m, _i, out, name=name):
            seen[name] = (out.dequantize() if out.is_quantized else out).detach().float()

        handles.append(model.get_submodule(name).register_forward_hook(hook))
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        for h in handles:
            h.remove()
    seen[""] = logits.detach().float()
    return seen


def compare_int8_to_fake_quant(qat: nn.Module, int8: nn.Module, x: torch.Tensor) -> Dict[str, Any]:
    """Per quantized layer of ``int8`` (those with an output scale): the output scale, the
    largest difference in steps of it, and the fraction of outputs more than one step off;
    plus top-1 agreement of the two models' predictions on ``x``."""
    layers = [n for n, m in int8.named_modules() if n and isinstance(getattr(m, "scale", None), float) and hasattr(m, "weight")]
    qat.eval(), int8.eval()
    a, b = _outputs(qat, layers, x), _outputs(int8, layers, x)
    rows = []
    for name in layers:
        scale = float(int8.get_submodule(name).scale)
        steps = (a[name] - b[name]).abs() / scale
        rows.append(
            {
                "layer": name,
                "scale": scale,
                "max_steps": float(steps.max()),
                "frac_over_one_step": float((steps > 1.0 + 1e-3).float().mean()),
            }
        )
    agree = (a[""].argmax(1) == b[""].argmax(1)).float().mean().item()
    return {"layers": rows, "top1_agreement": agree, "samples": int(x.shape[0])}
