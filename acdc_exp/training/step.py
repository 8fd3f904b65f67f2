"""One optimizer step, in the hook order every caller shares: the trainer, bench/gpu_check.py
(through bench/gpu_check_steps.py) and bench/bench_step_overhead.py. A change of order here
changes all three, so no benchmark can go on measuring another step.

    lr / wd from the plan; sparsifier.begin_step(p); QAT starts when the plan says so;
    quantizer.begin_step(p); forward + loss under the precision's autocast; backward through
    the loss scaler; sparsifier.update_after_backward(p) (RigL's update, which replaces the
    optimizer step); sparsifier.mask_gradients(); optimizer step; sparsifier.end_step()
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Callable, Optional, Protocol, Tuple

import torch
from torch import nn

from acdc_exp.plan import StepPlan
from acdc_exp.records import MaskUpdate
from acdc_exp.sparsity.sparsifier import Sparsifier
from acdc_exp.training.precision import Precision

if TYPE_CHECKING:
    from acdc_exp.quantization import NoQuantization
    from acdc_exp.quantization.qat import QATController

# the benchmark's stopwatch: a context manager per sparsifier hook, by name
HookTimer = Callable[[str], AbstractContextManager]


class StepParts(Protocol):
    """What a step touches. ``forward`` is what the step calls (``model`` wrapped in DDP or
    compiled, or ``model`` itself); the hooks act on the bare ``model``. ``start_qat`` swaps in
    the QAT modules and may replace ``forward``, ``precision`` and ``scaler``."""

    model: nn.Module
    forward: nn.Module
    optimizer: torch.optim.Optimizer
    criterion: nn.Module
    sparsifier: Sparsifier
    quantizer: "NoQuantization | QATController"
    precision: Precision
    scaler: torch.amp.GradScaler

    def start_qat(self, p: StepPlan) -> None: ...


def apply_hparams(optimizer: torch.optim.Optimizer, p: StepPlan) -> None:
    """The plan's lr and weight decay; groups marked ``decay: False`` (BN, biases) get none."""
    for group in optimizer.param_groups:
        group["lr"] = p.lr
        group["weight_decay"] = p.weight_decay if group.get("decay", True) else 0.0


def train_step(
    parts: StepParts,
    images: torch.Tensor,
    labels: torch.Tensor,
    p: StepPlan,
    *,
    on_mask_update: Optional[Callable[[MaskUpdate], None]] = None,
    hook_timer: Optional[HookTimer] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """One step on a prepared batch; returns the detached loss and logits (tensors: reading
    them waits for the device, so the caller decides when)."""
    timer = hook_timer or (lambda name: nullcontext())
    apply_hparams(parts.optimizer, p)
    with timer("begin_step"):
        update = parts.sparsifier.begin_step(p)
    if update is not None and on_mask_update is not None:
        on_mask_update(update)
    if p.qat.active and not parts.quantizer.prepared:
        parts.start_qat(p)
    parts.quantizer.begin_step(p, parts.model)  # the plan's observer and BN-statistics freezes
    with parts.precision.autocast():
        logits = parts.forward(images)
        loss = parts.criterion(logits, labels)
    parts.optimizer.zero_grad(set_to_none=True)
    parts.scaler.scale(loss).backward()
    # RigL's grow reads true gradients: unscaled, with the loss scaler's overflow check made
    # (an fp16 overflow on an update step skips the update, as the scaler skips the step)
    unscaled = p.masks.dense_gradient and parts.scaler.is_enabled()
    if unscaled:
        parts.scaler.unscale_(parts.optimizer)
    with timer("mask_gradients"):
        # RigL's update reads the dense gradients and takes the optimizer step's place
        regrown = parts.sparsifier.update_after_backward(p)
        parts.sparsifier.mask_gradients()
    if regrown is None:
        parts.scaler.step(parts.optimizer)
        parts.scaler.update()
    else:
        if unscaled:
            parts.scaler.update()  # the scale grows or backs off on this step's check, as on any step
        if on_mask_update is not None:
            on_mask_update(regrown)
    with timer("end_step"):
        parts.sparsifier.end_step()
    return loss.detach(), logits.detach()
