"""Which ONNX opset and IR version each exported format gets, so that every file loads in
onnxruntime and in older engines such as DeepSparse 1.8 (its ONNX Runtime takes IR <= 9 and
ai.onnx opsets <= 19).

The exporters stamp the newest IR version their onnx knows (IR 10 at any opset from the dynamo
exporter), although a file uses nothing newer than its opsets. ``stamp_ir_version`` writes the
lowest IR version those opsets need instead (onnx's own version table), or a version the user
asks for. ``pool_from_spatial_mean`` writes the classifier's global average pool as
``GlobalAveragePool``: the dynamo exporter emits ``ReduceMean`` with axes as an input (opset 18),
which DeepSparse 1.8 does not support, and one unsupported op leaves its whole graph to the
dense fallback (0% supported; measured in the README's deployment section).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np
import onnx
import torch.onnx._constants as torch_onnx_constants
from onnx import helper, shape_inference

from acdc_exp.deploy.onnx_graph import initializers, producers, remove_dead_nodes
from acdc_exp.errors import ConfigError

# Default opset per format and the range users may pick from. FP32 goes through the dynamo
# exporter, which cannot convert below 18 (ReduceMean's axes input has no opset-17 form); the
# int8 formats go through the TorchScript exporter, whose per-axis Q/DQ need 13.
DEFAULT_OPSET: Dict[str, int] = {"fp32": 18, "int8": 13}
OPSET_RANGE: Dict[str, Tuple[int, int]] = {
    "fp32": (18, torch_onnx_constants.ONNX_MAX_OPSET),
    "int8": (13, torch_onnx_constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET),
}


@dataclass(frozen=True)
class OnnxVersions:
    """What the user asked for; None = the format's default."""

    opset_fp32: Optional[int] = None
    opset_int8: Optional[int] = None
    ir_version: Optional[int] = None

    def opset(self, family: str) -> int:
        asked = self.opset_fp32 if family == "fp32" else self.opset_int8
        value = DEFAULT_OPSET[family] if asked is None else int(asked)
        low, high = OPSET_RANGE[family]
        if not low <= value <= high:
            raise ConfigError(f"onnx.opset_{family}={value} is not supported; allowed: {low}..{high}")
        return value

    def check(self) -> "OnnxVersions":
        """Validate every field now (one line per bad value), before any export starts."""
        for family in DEFAULT_OPSET:
            self.opset(family)
        if self.ir_version is not None and not 3 <= int(self.ir_version) <= onnx.IR_VERSION:
            raise ConfigError(
                f"onnx.ir_version={self.ir_version} is not supported; allowed: 3..{onnx.IR_VERSION} "
                "(default: the lowest the opset needs)"
            )
        return self


def min_ir_version(model: onnx.ModelProto) -> int:
    """The lowest IR version of onnx's version table for the model's standard domains (vendor
    domains such as com.microsoft have no entry there)."""
    low = 3
    for opset in model.opset_import:
        try:
            low = max(low, int(helper.find_min_ir_version_for([opset])))
        except ValueError:
            continue
    return low


def stamp_ir_version(model: onnx.ModelProto, ir_version: Optional[int] = None) -> onnx.ModelProto:
    """In place: the lowest IR version the model's opsets need, or ``ir_version`` if it is not
    below that. Drops opset imports of domains no node uses (optimizers add them, and an engine
    that does not know a domain's version refuses the file)."""
    used = {n.domain or "" for n in model.graph.node} | {""}
    keep = [o for o in model.opset_import if (o.domain or "") in used or o.domain == "ai.onnx"]
    del model.opset_import[:]
    model.opset_import.extend(keep)
    low = min_ir_version(model)
    if ir_version is not None and int(ir_version) < low:
        raise ConfigError(
            f"onnx.ir_version={ir_version} is too old for opset {_opsets(model)}; allowed: {low}..{onnx.IR_VERSION}"
        )
    model.ir_version = low if ir_version is None else int(ir_version)
    return model


def _opsets(model: onnx.ModelProto) -> str:
    return ", ".join(f"{o.domain or 'ai.onnx'} {o.version}" for o in model.opset_import)


def _reduced_axes(node: onnx.NodeProto, consts: Dict[str, np.ndarray], prod, rank: int) -> Optional[set]:
    axes = None
    if len(node.input) > 1 and node.input[1]:
        src = node.input[1]
        if src in consts:
            axes = consts[src]
        elif src in prod and prod[src].op_type == "Constant":
            axes = onnx.numpy_helper.to_array(prod[src].attribute[0].t)
    else:
        for a in node.attribute:
            if a.name == "axes":
                axes = np.asarray(helper.get_attribute_value(a))
    if axes is None:
        return None
    return {int(a) % rank for a in np.asarray(axes).reshape(-1)}


def pool_from_spatial_mean(model: onnx.ModelProto) -> onnx.ModelProto:
    """In place: ``ReduceMean`` over the two spatial axes of a 4-D tensor, keeping dims, becomes
    ``GlobalAveragePool`` (the same function: the mean over H and W, output N x C x 1 x 1)."""
    inferred = shape_inference.infer_shapes(model)
    ranks = {
        v.name: len(v.type.tensor_type.shape.dim)
        for v in list(inferred.graph.value_info) + list(inferred.graph.input)
        if v.type.tensor_type.HasField("shape")
    }
    consts, prod = initializers(model), producers(model)
    nodes = []
    for node in model.graph.node:
        keepdims = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "keepdims"), 1)
        if (
            node.op_type == "ReduceMean"
            and keepdims == 1
            and ranks.get(node.input[0]) == 4
            and _reduced_axes(node, consts, prod, 4) == {2, 3}
        ):
            node = helper.make_node("GlobalAveragePool", [node.input[0]], list(node.output), name=node.name)
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    remove_dead_nodes(model)
    return model
