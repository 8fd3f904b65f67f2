"""BatchNorm statistics synchronized across DDP ranks (``trainer.sync_batchnorm``).

A global batch of 256 over 32 GPUs leaves 8 images per BatchNorm; synced BN normalizes with
the statistics of the whole global batch instead. torch's ``nn.SyncBatchNorm`` cannot be used
as is: its forward raises on CPU tensors (the gloo test suite runs on CPU) and DDP refuses to
wrap a CPU module that holds one. The modules here are therefore subclasses of the plain
``nn.BatchNorm1d/2d/3d`` (every ``isinstance`` check of the project still holds, DDP accepts
them) that, in training mode with more than one rank,

- on CUDA run torch's own ``nn.SyncBatchNorm`` forward (its kernels and all-gather);
- on CPU all-reduce per-channel sum, sum of squares and count (autograd-aware, so gradients
  flow across ranks) and normalize as BatchNorm does on the concatenated batch;

and otherwise are exactly BatchNorm. Conversion moves the module's whole state (same
``nn.Parameter`` and buffer objects, hooks, qconfig, observers, train/eval mode), so the
optimizer, the sparsifier and DDP keep their references and state_dict keys do not change.

Use (runs/train.py)::

    if sync_batchnorm_wanted(cfg.trainer.sync_batchnorm, per_process_batch, world_size):
        model = to_sync_batchnorm(model)        # before DDP wraps it

torch.ao's QAT fuser and ``convert`` know only the plain BatchNorm2d: QATController.prepare
unsyncs around its module swap (``plain_batchnorm``) and syncs the fused modules' ``.bn``
again; ``convert_to_int8`` unsyncs its own copy (``from_sync_batchnorm``).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Dict, Iterator, Optional, Type

import torch
import torch.distributed as dist
from torch import nn

from acdc_exp.errors import ConfigError

# per-process batches below this many images get synced BN under ``auto``
SYNC_BN_BATCH_THRESHOLD = 32
SYNC_BN_SETTINGS = ("auto", "true", "false")


def sync_batchnorm_choice(setting: str | bool) -> str:
    """``trainer.sync_batchnorm`` as one of ``SYNC_BN_SETTINGS`` (YAML's true/false and an
    override's True/False included), else ConfigError naming the value and the choices."""
    choice = str(setting).lower()
    if choice not in SYNC_BN_SETTINGS:
        raise ConfigError(f"trainer.sync_batchnorm={setting!r} is not allowed; allowed: {', '.join(SYNC_BN_SETTINGS)}")
    return choice


def sync_batchnorm_wanted(setting: str | bool, per_process_batch: int, world_size: int) -> bool:
    """Whether BN is synced: ``true`` always and ``auto`` when the per-process batch is below
    ``SYNC_BN_BATCH_THRESHOLD``, both only under DDP (more than one process)."""
    choice = sync_batchnorm_choice(setting)  # before the world-size shortcut: a typo fails on one process too
    if world_size <= 1 or choice == "false":
        return False
    return choice == "true" or per_process_batch < SYNC_BN_BATCH_THRESHOLD


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks whose gradient is the sum over ranks too: each rank's loss depends on
    every rank's statistics. (torch.distributed.nn.functional.all_reduce is deprecated.)"""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor, group: Any) -> torch.Tensor:
        ctx.group = group
        out = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple:
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


def _ready_group(process_group: Any) -> Optional[Any]:
    """The process group to sync over when there is more than one rank, else None."""
    if not (dist.is_available() and dist.is_initialized()):
        return None
    group = process_group if process_group is not None else dist.group.WORLD
    return group if dist.get_world_size(group) > 1 else None


class _SyncMixin:
    """Forward of the synced BatchNorms; the plain BatchNorm class comes next in the MRO."""

    process_group: Any = None  # None: the default (WORLD) group

    def _check_non_zero_input_channels(self, input: torch.Tensor) -> None:
        # nn.SyncBatchNorm.forward calls this on its ``self``
        if input.size(1) == 0:
            raise ValueError("SyncBatchNorm number of input channels should be non-zero")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        group = _ready_group(self.process_group) if self.training else None
        if group is None:  # eval, one rank or no process group: exactly BatchNorm
            return super().forward(input)  # type: ignore[misc]
        if input.device.type == "cpu":
            return self._cpu_synced_forward(input, group)
        # torch's own implementation (reads only attributes this module has)
        return nn.SyncBatchNorm.forward(self, input)  # type: ignore[arg-type]

    def _average_factor(self) -> float:
        """BatchNorm's running-average weight; counts the batch as BatchNorm does."""
        if not self.track_running_stats:  # type: ignore[attr-defined]
            return 0.0
        self.num_batches_tracked.add_(1)  # type: ignore[attr-defined]
        if self.momentum is None:  # type: ignore[attr-defined]
            return 1.0 / float(self.num_batches_tracked.item())  # type: ignore[attr-defined]
        return float(self.momentum)  # type: ignore[attr-defined]

    def _cpu_synced_forward(self, input: torch.Tensor, group: Any) -> torch.Tensor:
        self._check_input_dim(input)  # type: ignore[attr-defined]
        self._check_non_zero_input_channels(input)
        factor = self._average_factor()
        channels = input.size(1)
        dims = [0, *range(2, input.dim())]
        # float64 sums: var = E[x^2] - mean^2 would lose digits in float32
        x64 = input.to(torch.float64)
        local = torch.cat([x64.sum(dims), x64.square().sum(dims), x64.new_full((1,), input.numel() // channels)])
        # sums (not means) combine exactly when ranks hold different batch sizes
        total = _AllReduceSum.apply(local, group)
        count = int(total[-1].item())
        if count < 2:
            raise ValueError(f"Expected more than 1 value per channel when training, got input size {count}")
        mean = total[:channels] / count
        var = (total[channels : 2 * channels] / count - mean.square()).clamp_min(0.0)
        if self.track_running_stats:  # type: ignore[attr-defined]
            with torch.no_grad():
                rm, rv = self.running_mean, self.running_var  # type: ignore[attr-defined]
                rm.mul_(1.0 - factor).add_(mean.to(rm.dtype), alpha=factor)
                # running_var keeps the unbiased variance, as BatchNorm does
                rv.mul_(1.0 - factor).add_((var * (count / (count - 1))).to(rv.dtype), alpha=factor)
        shape = [1, channels] + [1] * (input.dim() - 2)
        scale = torch.rsqrt(var + self.eps)  # type: ignore[attr-defined]
        weight, bias = self.weight, self.bias  # type: ignore[attr-defined]
        if weight is not None:
            scale = scale * weight
        out = (input - mean.to(input.dtype).view(shape)) * scale.to(input.dtype).view(shape)
        return out if bias is None else out + bias.to(input.dtype).view(shape)


class SyncBatchNorm1d(_SyncMixin, nn.BatchNorm1d):
    """BatchNorm1d with statistics over all ranks while training."""


class SyncBatchNorm2d(_SyncMixin, nn.BatchNorm2d):
    """BatchNorm2d with statistics over all ranks while training."""


class SyncBatchNorm3d(_SyncMixin, nn.BatchNorm3d):
    """BatchNorm3d with statistics over all ranks while training."""


# exact types only: subclasses (torch.ao's quantized BatchNorm2d, custom BNs) keep their class
_TO_SYNC: Dict[type, Type[nn.Module]] = {
    nn.BatchNorm1d: SyncBatchNorm1d,
    nn.BatchNorm2d: SyncBatchNorm2d,
    nn.BatchNorm3d: SyncBatchNorm3d,
}
_TO_PLAIN: Dict[type, type] = {v: k for k, v in _TO_SYNC.items()}
SYNCED_BATCHNORM = tuple(_TO_PLAIN)


def _recast(module: nn.Module, cls: type) -> nn.Module:
    """A ``cls`` instance holding ``module``'s state. The attribute dict is shared shallowly:
    the same Parameter/buffer objects, child modules and hook dicts (existing hook handles
    keep working), qconfig and ``training``."""
    new = cls.__new__(cls)
    new.__dict__.update(module.__dict__)
    return new


def _swap(model: nn.Module, mapping: Dict[type, type], process_group: Any, memo: Dict[int, nn.Module]) -> nn.Module:
    if id(model) in memo:  # a module shared by two parents stays shared
        return memo[id(model)]
    target = mapping.get(type(model))
    out = model
    if target is not None:
        out = _recast(model, target)
        if issubclass(target, _SyncMixin):
            out.process_group = process_group
        else:
            out.__dict__.pop("process_group", None)
    memo[id(model)] = out
    for name, child in list(out._modules.items()):
        if child is not None:
            new_child = _swap(child, mapping, process_group, memo)
            if new_child is not child:
                out._modules[name] = new_child
    return out


def to_sync_batchnorm(model: nn.Module, process_group: Any = None) -> nn.Module:
    """Make every ``nn.BatchNorm1d/2d/3d`` in ``model`` synced, in place on its parent (also
    the ``.bn`` of torch.ao's fused QAT ConvBn modules). Returns ``model``, or the new module
    when ``model`` itself is a BatchNorm. ``process_group`` None syncs over all ranks."""
    return _swap(model, _TO_SYNC, process_group, {})


def from_sync_batchnorm(model: nn.Module) -> nn.Module:
    """The reverse of ``to_sync_batchnorm``: plain BatchNorms with the same state, as
    ``tq.fuse_modules_qat`` and ``tq.convert`` need them."""
    return _swap(model, _TO_PLAIN, None, {})


def has_sync_batchnorm(model: nn.Module) -> bool:
    """Whether ``model`` holds a BatchNorm made by ``to_sync_batchnorm``."""
    return any(isinstance(m, SYNCED_BATCHNORM) for m in model.modules())


@contextmanager
def plain_batchnorm(model: nn.Module) -> Iterator[nn.Module]:
    """Plain BatchNorms inside the block (QAT fusion/preparation), synced again after it
    (including BNs created in the block) if ``model`` had synced ones. ``model`` must not be
    a BatchNorm itself (its children are swapped in place)."""
    group = next((m.process_group for m in model.modules() if isinstance(m, SYNCED_BATCHNORM)), None)
    was_synced = has_sync_batchnorm(model)
    from_sync_batchnorm(model)
    try:
        yield model
    finally:
        if was_synced:
            to_sync_batchnorm(model, group)
