"""Which modules QAT touches: Conv-BN(-ReLU) fusion groups and the quantized regions.

Recipe submodule names map onto the ResNet layout every model here shares (module names as in
torchvision): ``input`` = QuantStub + stem (conv1/bn1/relu, maxpool if any), ``sections`` =
layer1..layerN. Everything else (avgpool's output after the DeQuantStub, ``fc``) stays float.
When only one of the two is quantized, a stub at the entry of ``layer1`` moves the
float/int8 boundary there (see ``_BoundarySequential``).
"""

from __future__ import annotations

import re
from typing import List, Sequence

import torch.ao.quantization as tq
from torch import nn

from acdc_exp.errors import ConfigError

SUBMODULES = ("input", "sections")
STEM = ("conv1", "bn1", "relu", "maxpool")
_SECTION_RE = re.compile(r"^layer(\d+)$")


def section_names(model: nn.Module) -> List[str]:
    """layer1..layerN in numeric order."""
    found = [(int(m.group(1)), n) for n, _ in model.named_children() if (m := _SECTION_RE.match(n))]
    if not found:
        raise ConfigError(f"{type(model).__name__} has no layer1..layerN sections; QAT supports the ResNets of acdc_exp.models")
    return [n for _, n in sorted(found)]


def _block_groups(block: nn.Module) -> List[List[str]]:
    own = getattr(block, "fuse_groups", None)
    if callable(own):  # the small ResNet states its groups (downsample included)
        return [list(g) for g in own()]
    if hasattr(block, "conv3"):  # torchvision quantizable Bottleneck
        groups = [["conv1", "bn1", "relu1"], ["conv2", "bn2", "relu2"], ["conv3", "bn3"]]
    else:  # torchvision quantizable BasicBlock: relu follows bn1 only (the add has its own relu)
        groups = [["conv1", "bn1", "relu"], ["conv2", "bn2"]]
    if getattr(block, "downsample", None) is not None:
        groups.append(["downsample.0", "downsample.1"])
    return groups


def fusion_groups(model: nn.Module, submodules: Sequence[str] = SUBMODULES) -> List[List[str]]:
    """Fully qualified Conv-BN(-ReLU) groups for ``fuse_modules_qat``, in the chosen regions
    only: a float region keeps its modules (and parameter names) untouched."""
    chosen = set(check_submodules(submodules))
    groups = [["conv1", "bn1", "relu"]] if "input" in chosen else []
    if "sections" not in chosen:
        return groups
    for section in section_names(model):
        for i, block in enumerate(getattr(model, section)):
            groups += [[f"{section}.{i}.{name}" for name in g] for g in _block_groups(block)]
    return groups


def check_submodules(submodules: Sequence[str]) -> List[str]:
    chosen = [str(s) for s in submodules]
    bad = [s for s in chosen if s not in SUBMODULES]
    if bad or not chosen:
        raise ConfigError(f"quantization.submodules={chosen} is not allowed; allowed: a non-empty subset of {list(SUBMODULES)}")
    return chosen


class _BoundarySequential(nn.Sequential):
    """A section that starts with a Quant/DeQuant stub (child ``boundary``), so the int8/float
    boundary can sit at its entry; the numbered children keep their names (``layer1.0.conv1``)
    so parameter names and sparsity masks are unaffected."""

    def forward(self, x):  # type: ignore[override]
        x = self.boundary(x)
        for name, module in self._modules.items():
            if name != "boundary":
                x = module(x)
        return x


def _add_boundary(section: nn.Module, stub: nn.Module) -> None:
    if not isinstance(section, nn.Sequential):
        raise ConfigError(
            f"cannot place a quantization boundary at {type(section).__name__}; quantize input and sections together"
        )
    section.__class__ = _BoundarySequential
    section.add_module("boundary", stub)


def assign_qconfig(model: nn.Module, submodules: Sequence[str], qconfig: tq.QConfig) -> None:
    """Set ``qconfig`` on the chosen regions (children inherit it in prepare) and None elsewhere."""
    chosen = set(check_submodules(submodules))
    sections = section_names(model)
    model.qconfig = None
    for _, child in model.named_children():
        child.qconfig = None
    if "input" in chosen:
        for name in ("quant",) + STEM:
            if hasattr(model, name):
                getattr(model, name).qconfig = qconfig
    if "sections" in chosen:
        for name in sections:
            getattr(model, name).qconfig = qconfig
        model.dequant.qconfig = qconfig  # int8 -> float before avgpool's consumer (fc)
    first = getattr(model, sections[0])
    if chosen == {"input"}:
        _add_boundary(first, tq.DeQuantStub())
        first.boundary.qconfig = qconfig
    elif chosen == {"sections"}:
        _add_boundary(first, tq.QuantStub())
        first.boundary.qconfig = qconfig
