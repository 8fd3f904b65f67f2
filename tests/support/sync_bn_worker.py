"""Synced-BN training run for tests/e2e/test_sync_bn.py: under torchrun each gloo rank trains on its
half of a fixed global batch (float steps, then QAT-fused steps); ``reference`` trains the same
model on the whole batch in one process. ``python sync_bn_worker.py OUT_DIR`` (under torchrun)
writes ``rank{R}.pt``."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.ao.quantization as tq
import torch.distributed as dist
from torch import nn

from acdc_exp.models import build_model
from acdc_exp.models.sync_bn import SYNCED_BATCHNORM, to_sync_batchnorm
from acdc_exp.quantization.qat import QATController

GLOBAL_BATCH = 8
FLOAT_STEPS, QAT_STEPS = 2, 2
# BatchNorm1d check: unequal shares of 8 samples (3 on rank 0, 5 on rank 1)
BN1D_SPLIT = 3


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return build_model("resnet_small", width=4)


def global_batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    # an offset and scale, so a mean/variance mix-up would show
    images = 0.5 + 2.0 * torch.randn(GLOBAL_BATCH, 3, 8, 8, generator=gen)
    return images, torch.randint(0, 10, (GLOBAL_BATCH,), generator=gen)


def bn1d_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(2)
    return 1.0 + torch.randn(8, 3, 5, generator=gen), torch.randn(8, 3, 5, generator=gen)


def _prepare_float_qat(model: nn.Module) -> None:
    """Fuse and prepare for QAT, then switch fake quantization and observers off: the steps
    stay float math, comparable between ranks and one process (observers see local data)."""
    QATController().prepare(model)
    model.apply(tq.disable_fake_quant)
    model.apply(tq.disable_observer)


def _train(net: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, steps: int) -> None:
    net.train()
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()


def _bn1d(x: torch.Tensor, w: torch.Tensor, bn: nn.Module) -> dict:
    x = x.clone().requires_grad_(True)
    out = bn(x)
    (out * w).sum().backward()
    return {"out": out.detach(), "x_grad": x.grad, "weight_grad": bn.weight.grad, "bn": bn.state_dict()}


def reference(images: torch.Tensor, labels: torch.Tensor) -> dict:
    """One process, plain BatchNorm, the given batch."""
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    _train(model, opt, images, labels, FLOAT_STEPS)
    _prepare_float_qat(model)
    _train(model, opt, images, labels, QAT_STEPS)
    x, w = bn1d_inputs()
    return {"model": model.state_dict(), "bn1d": _bn1d(x, w, nn.BatchNorm1d(3, momentum=None))}


def main(out_dir: Path) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    images, labels = global_batch()
    share = GLOBAL_BATCH // world
    x, y = images[rank * share : (rank + 1) * share], labels[rank * share : (rank + 1) * share]

    model = to_sync_batchnorm(make_model())
    # no buffer broadcast: equal running stats across ranks must come from the sync itself
    ddp = nn.parallel.DistributedDataParallel(model, forward_sync_buffers=False)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9)
    _train(ddp, opt, x, y, FLOAT_STEPS)
    # QAT start as the trainer does it: swap modules inside the running DDP wrapper
    _prepare_float_qat(model)  # QATController.prepare unsyncs for the fusion and syncs again
    fused_bns = [n for n, m in model.named_modules() if n.endswith(".bn") and isinstance(m, SYNCED_BATCHNORM)]
    _train(ddp, opt, x, y, QAT_STEPS)

    bx, bw = bn1d_inputs()
    lo, hi = (0, BN1D_SPLIT) if rank == 0 else (BN1D_SPLIT, bx.size(0))
    bn1d = to_sync_batchnorm(nn.BatchNorm1d(3, momentum=None))
    result = {"model": model.state_dict(), "fused_synced_bns": fused_bns, "bn1d": _bn1d(bx[lo:hi], bw[lo:hi], bn1d)}
    torch.save(result, out_dir / f"rank{rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(Path(sys.argv[1]))
