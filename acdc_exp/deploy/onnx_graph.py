"""Small ONNX graph utilities: tidy an exported QDQ graph, and read weight sparsity back.

The TorchScript exporter writes a quantized model's constants as ``Constant`` nodes, zero
points through ``ConstantOfShape``/``Cast`` chains and no-op ``Cast`` nodes between
QuantizeLinear and DequantizeLinear. ``tidy_qdq`` folds those into initializers so every
quantized weight is a plain int8 initializer feeding a DequantizeLinear (the pattern engines
and ``to_qoperator`` look for). Only the constant plumbing is folded: Q/DQ nodes stay.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional

import numpy as np
import onnx
from onnx import helper, numpy_helper

# the weight input index of each op whose weight sparsity is reported
_WEIGHT_INPUT = {"Conv": 1, "Gemm": 1, "MatMul": 1, "ConvInteger": 1, "QLinearConv": 3, "QLinearMatMul": 3}


def initializers(model: onnx.ModelProto) -> Dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def consumers(model: onnx.ModelProto) -> Dict[str, List[onnx.NodeProto]]:
    out: Dict[str, List[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            out.setdefault(name, []).append(node)
    return out


def producers(model: onnx.ModelProto) -> Dict[str, onnx.NodeProto]:
    return {o: node for node in model.graph.node for o in node.output}


def _set_initializer(model: onnx.ModelProto, name: str, value: np.ndarray) -> None:
    for i, t in enumerate(model.graph.initializer):
        if t.name == name:
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(value, name))
            return
    model.graph.initializer.append(numpy_helper.from_array(value, name))


def _fold_node(node: onnx.NodeProto, consts: Dict[str, np.ndarray]) -> Optional[np.ndarray]:
    """The value of a constant-only plumbing node, or None when it is not one we fold."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type == "Constant" and "value" in attrs:
        return numpy_helper.to_array(attrs["value"])
    if any(i and i not in consts for i in node.input):
        return None
    if node.op_type == "ConstantOfShape":
        fill = numpy_helper.to_array(attrs["value"]) if "value" in attrs else np.zeros(1, np.float32)
        return np.full(tuple(int(d) for d in consts[node.input[0]]), fill.reshape(-1)[0], dtype=fill.dtype)
    if node.op_type == "Cast":
        return consts[node.input[0]].astype(helper.tensor_dtype_to_np_dtype(attrs["to"]))
    if node.op_type == "Identity":
        return consts[node.input[0]]
    return None


def remove_dead_nodes(model: onnx.ModelProto) -> None:
    """Drop nodes whose outputs nobody reads, and initializers nobody reads."""
    graph = model.graph
    while True:
        used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        keep = [n for n in graph.node if any(o in used for o in n.output)]
        if len(keep) == len(graph.node):
            break
        del graph.node[:]
        graph.node.extend(keep)
    used = {i for n in graph.node for i in n.input}
    live = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(live)


def _rename_input(model: onnx.ModelProto, old: str, new: str) -> None:
    for node in model.graph.node:
        for k, name in enumerate(node.input):
            if name == old:
                node.input[k] = new


def tidy_qdq(model: onnx.ModelProto) -> onnx.ModelProto:
    """Fold constant plumbing into initializers, drop no-op Casts, make per-tensor
    scales/zero points scalars, and name quantized weights after their layer."""
    graph = model.graph
    consts = initializers(model)
    kept = []
    for node in graph.node:
        value = _fold_node(node, consts)
        if value is not None:
            consts[node.output[0]] = value
            _set_initializer(model, node.output[0], value)
        else:
            kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)
    # a Cast to the type its input already has (QuantizeLinear uint8 -> Cast uint8) is a no-op
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in list(inferred.graph.value_info) + list(inferred.graph.input)}
    types.update({name: helper.np_dtype_to_tensor_dtype(v.dtype) for name, v in consts.items()})
    for node in list(graph.node):
        if node.op_type != "Cast":
            continue
        to = next(helper.get_attribute_value(a) for a in node.attribute if a.name == "to")
        if types.get(node.input[0]) == to and node.output[0] not in {o.name for o in graph.output}:
            _rename_input(model, node.output[0], node.input[0])
            graph.node.remove(node)
    # per-tensor scale / zero point as scalars (a 1-element 1-D tensor reads as per-axis)
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            for name in node.input[1:]:
                if name in consts and consts[name].ndim == 1 and consts[name].size == 1:
                    consts[name] = consts[name].reshape(())
                    _set_initializer(model, name, consts[name])
    _name_quantized_weights(model)
    remove_dead_nodes(model)
    return model


def layer_name_of(node: onnx.NodeProto) -> str:
    """``/layer1/0/conv1/Conv`` -> ``layer1.0.conv1`` (TorchScript exporter scope names)."""
    parts = [p for p in node.name.split("/") if p]
    return ".".join(parts[:-1]) if len(parts) > 1 else node.name


def _name_quantized_weights(model: onnx.ModelProto) -> None:
    """Give each DequantizeLinear-fed weight initializer a readable ``<layer>.weight_quantized``."""
    prod = producers(model)
    names = {t.name for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul"):
            continue
        dq = prod.get(node.input[1])
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in names:
            continue
        new = f"{layer_name_of(node)}.weight_quantized"
        old = dq.input[0]
        if new == old or new in names:
            continue
        for t in model.graph.initializer:
            if t.name == old:
                t.name = new
        _rename_input(model, old, new)
        names.discard(old)
        names.add(new)


@dataclass
class LayerSparsity:
    layer: str
    op: str
    dtype: str
    shape: List[int]
    numel: int
    zeros: int

    @property
    def sparsity(self) -> float:
        return self.zeros / self.numel if self.numel else 0.0

    def as_dict(self) -> dict:
        d = asdict(self)
        d["sparsity"] = self.sparsity
        return d


def _weight_source(model_prod, consts, name: str):
    """(array, zero point or None) of a weight input, looking through one DequantizeLinear."""
    if name in consts:
        return consts[name], None
    dq = model_prod.get(name)
    if dq is not None and dq.op_type == "DequantizeLinear" and dq.input[0] in consts:
        zp = consts.get(dq.input[2]) if len(dq.input) > 2 and dq.input[2] else None
        return consts[dq.input[0]], zp
    return None, None


def weight_sparsity(model: onnx.ModelProto) -> List[LayerSparsity]:
    """Zero fraction of every Conv/Gemm-like weight as stored in the graph. A quantized weight
    counts its integer values equal to the zero point (the ones that mean real 0.0)."""
    consts = initializers(model)
    prod = producers(model)
    rows: List[LayerSparsity] = []
    for node in model.graph.node:
        if node.op_type not in _WEIGHT_INPUT:
            continue
        idx = _WEIGHT_INPUT[node.op_type]
        if node.op_type == "QLinearConv":
            w = consts.get(node.input[3])
            zp = consts.get(node.input[5])
        else:
            w, zp = _weight_source(prod, consts, node.input[idx])
        if w is None:
            continue
        if zp is None:
            zero_mask = w == 0
        else:
            zp_b = np.asarray(zp).reshape((-1,) + (1,) * (w.ndim - 1)) if np.asarray(zp).size > 1 else np.asarray(zp)
            zero_mask = w == zp_b
        name = node.input[idx] if node.op_type != "QLinearConv" else node.input[3]
        layer = re.sub(r"\.weight(_quantized)?$", "", name) if re.search(r"\.weight(_quantized)?$", name) else layer_name_of(node)
        rows.append(LayerSparsity(layer, node.op_type, str(w.dtype), list(w.shape), int(w.size), int(zero_mask.sum())))
    return rows
