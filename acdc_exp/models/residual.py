"""What every residual model here shares: its branches can start as identity."""

from __future__ import annotations

from torch import nn


def zero_init_last_bn(model: nn.Module) -> None:
    """Each residual branch starts as identity (Goyal et al.): zero the scale of its last
    BatchNorm (a block's ``bn3`` or ``bn2``). A block is a module with a ``downsample`` slot, as
    torchvision's BasicBlock and Bottleneck (and their quantizable forms) and the small ResNet's
    block have; the quantizable blocks name their residual add ``add_relu``/``skip_add_relu``."""
    for m in model.modules():
        last_bn = getattr(m, "bn3", None) or getattr(m, "bn2", None)
        if hasattr(m, "downsample") and isinstance(last_bn, nn.BatchNorm2d):
            nn.init.zeros_(last_bn.weight)
