"""torch.distributed set-up from torchrun's or SLURM's (submitit's) environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch
from submitit.helpers import TorchDistributedEnvironment

from acdc_exp.errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def cuda_index(local_rank: int, visible: int, visible_devices: Optional[str] = None) -> int:
    """The CUDA ordinal a task with ``local_rank`` should use when ``visible`` devices are visible.

    torchrun and one-task-per-node SLURM jobs show every GPU of the node: ordinal = local rank.
    SLURM with one GPU per task (``--gpus-per-task=1``) shows each task only its own GPU, so
    ``cuda:<local_rank>`` would be out of range; ordinal 0 is that GPU. Anything else is a
    launch mismatch (more tasks than GPUs), reported instead of a CUDA "invalid device ordinal".
    ``visible_devices`` only feeds the message (default: $CUDA_VISIBLE_DEVICES).
    """
    if 0 <= local_rank < visible:
        return local_rank
    if visible == 1:
        return 0
    shown = os.environ.get("CUDA_VISIBLE_DEVICES") if visible_devices is None else visible_devices
    raise ConfigError(
        f"local_rank={local_rank} has no GPU: {visible} CUDA device(s) visible "
        f"(CUDA_VISIBLE_DEVICES={shown if shown is not None else '<unset>'}); "
        "allowed: one GPU per task, or at least local_rank + 1 GPUs visible to each task"
    )


def init_distributed(device_kind: str) -> DistInfo:
    """Join the process group when launched as several tasks; NCCL on GPU, gloo on CPU.

    torchrun sets RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR; under SLURM with several tasks
    (hydra's submitit launcher) submitit's helper derives them from the job environment.
    """
    if "RANK" not in os.environ and int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not torch.distributed.is_initialized():
        backend = "nccl" if device_kind == "cuda" else "gloo"
        if device_kind == "cuda":
            torch.cuda.set_device(cuda_index(local, torch.cuda.device_count()))
        torch.distributed.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistInfo(rank, world, local)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        torch.distributed.barrier()


def shutdown(info: DistInfo) -> None:
    if info.enabled and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


@torch.no_grad()
def ranks_identical(info: DistInfo, model: torch.nn.Module, masks: dict, device: torch.device) -> bool:
    """Under DDP, do all ranks hold bit-identical weights and masks? (They must: DDP averages
    gradients and the mask functions are deterministic.) True without DDP."""
    if not info.enabled:
        return True
    parts = [p.detach().double().sum().view(1) for p in model.parameters()]
    parts += [p.detach().double().square().sum().view(1) for p in model.parameters()]
    for m in masks.values():
        idx = torch.arange(m.numel(), device=m.device, dtype=torch.float64)
        parts.append((m.flatten().double() * idx).sum().view(1))
    local = torch.cat(parts).to(device)
    gathered = [torch.empty_like(local) for _ in range(info.world_size)]
    torch.distributed.all_gather(gathered, local)
    return all(torch.equal(g, gathered[0]) for g in gathered)


def any_rank(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True when ``flag`` is set on any rank (every rank must call it at the same step)."""
    if not info.enabled:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
    return bool(value.item())


def max_over_ranks(value: int | Sequence[int], info: DistInfo, device: torch.device) -> Any:
    """The largest ``value`` over the ranks (elementwise for a sequence); every rank must call
    it at the same point."""
    if not info.enabled:
        return value
    t = torch.tensor(value, dtype=torch.int64, device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return t.tolist()
