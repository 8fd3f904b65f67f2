"""Rewrite a tidy QDQ graph into QOperator form (QLinearConv), as sparse CPU engines want.

Pattern replaced, for every Conv whose data and weight come through DequantizeLinear:

    DQ(x_q) -> Conv(., DQ(w_q), [DQ(b_q)]) -> [Relu] -> Q(y)   ==>   QLinearConv(x_q, w_q, b_q) -> y_q

The scales and zero points are the QAT ones already in the graph, so no calibration happens
here. A Relu folds into the output quantization only when the output zero point is the
lowest uint8 value (0): clamping at the zero point is then exactly Relu. The int32 bias is
requantized to scale x_scale * w_scale, which QLinearConv requires. Adds, pools and the float
classifier keep their QDQ / float form (standard ONNX ops, no vendor domains).
"""

from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np
import onnx
from onnx import helper, numpy_helper

from acdc_exp.deploy.onnx_graph import consumers, initializers, producers, remove_dead_nodes


def _single_consumer(cons: Dict[str, List[onnx.NodeProto]], name: str, op: str) -> Optional[onnx.NodeProto]:
    users = cons.get(name, [])
    return users[0] if len(users) == 1 and users[0].op_type == op else None


def _add_init(model: onnx.ModelProto, name: str, value: np.ndarray) -> str:
    model.graph.initializer.append(numpy_helper.from_array(value, name))
    return name


def to_qoperator(model: onnx.ModelProto) -> onnx.ModelProto:
    """In place; returns ``model``. Convs that do not match the pattern are left as they are."""
    consts = initializers(model)
    prod = producers(model)
    cons = consumers(model)
    graph_outputs = {o.name for o in model.graph.output}
    new_nodes: Dict[int, onnx.NodeProto] = {}  # id(conv node) -> replacement
    dropped: set = set()
    for conv in model.graph.node:
        if conv.op_type != "Conv":
            continue
        dq_x, dq_w = prod.get(conv.input[0]), prod.get(conv.input[1])
        if dq_x is None or dq_w is None or dq_x.op_type != "DequantizeLinear" or dq_w.op_type != "DequantizeLinear":
            continue
        if dq_w.input[0] not in consts or any(i not in consts for i in dq_w.input[1:]):
            continue
        out = conv.output[0]
        relu = _single_consumer(cons, out, "Relu")
        q = _single_consumer(cons, relu.output[0] if relu else out, "QuantizeLinear")
        if q is None or out in graph_outputs or any(i not in consts for i in q.input[1:]):
            continue
        y_zp = consts[q.input[2]] if len(q.input) > 2 else np.zeros((), np.uint8)
        if relu is not None and not (y_zp.dtype == np.uint8 and int(y_zp) == 0):
            continue  # clamping at a nonzero zero point is not a Relu
        x_scale = consts.get(dq_x.input[1])
        if x_scale is None:
            continue
        w_scale = consts[dq_w.input[1]]
        inputs = [
            dq_x.input[0],
            dq_x.input[1],
            dq_x.input[2],
            dq_w.input[0],
            dq_w.input[1],
            dq_w.input[2],
            q.input[1],
            q.input[2],
        ]
        if len(conv.input) > 2 and conv.input[2]:
            bias = _float_bias(conv.input[2], prod, consts)
            if bias is None:
                continue
            bias_scale = (np.asarray(x_scale, np.float64) * np.asarray(w_scale, np.float64)).reshape(-1)
            b_q = np.round(bias.astype(np.float64) / bias_scale).astype(np.int32)
            inputs.append(_add_init(model, f"{conv.name or out}.bias_int32", b_q))
        attrs = [a for a in conv.attribute]
        qconv = helper.make_node("QLinearConv", inputs, [q.output[0]], name=(conv.name or out) + "_qlinear")
        qconv.attribute.extend(attrs)
        new_nodes[id(conv)] = qconv
        dropped.update(id(n) for n in (q, relu) if n is not None)
    nodes = []
    for node in model.graph.node:
        if id(node) in dropped:
            continue
        nodes.append(new_nodes.get(id(node), node))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    remove_dead_nodes(model)
    return model


def _float_bias(name: str, prod, consts) -> Optional[np.ndarray]:
    if name in consts:
        return consts[name].astype(np.float64)
    dq = prod.get(name)
    if dq is None or dq.op_type != "DequantizeLinear" or any(i not in consts for i in dq.input if i):
        return None
    b = consts[dq.input[0]].astype(np.float64)
    scale = consts[dq.input[1]].astype(np.float64)
    zp = consts[dq.input[2]].astype(np.float64) if len(dq.input) > 2 and dq.input[2] else 0.0
    return (b - zp) * scale
