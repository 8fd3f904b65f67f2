"""ONNX export of pruned float and QAT models (random weights and inputs), checked in
onnxruntime; per-layer sparsity read back from the files; the acdc-export console script."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import onnx
import pytest
import torch
from conftest import one_error_line, run_cli
from omegaconf import OmegaConf, open_dict

from acdc_exp.deploy.export import PER_CHANNEL_NOTE, export_member, torch_layer_sparsity
from acdc_exp.deploy.onnx_check import ort_session
from acdc_exp.deploy.onnx_graph import initializers, producers
from acdc_exp.models import build_model
from acdc_exp.plan import StepPlan
from acdc_exp.quantization.qat import QATController
from acdc_exp.sparsity.sparsifier import Sparsifier

PRUNED = ["layer*.conv*.weight", "layer*.downsample.0.weight"]


def pruned(name: str = "resnet_small", sparsity: float = 0.8, seed: int = 0):
    torch.manual_seed(seed)
    model = build_model(name, width=8) if name == "resnet_small" else build_model(name)
    sp = Sparsifier(model, params=PRUNED)
    sp.begin_step(StepPlan.make("compressed", sparsity, update_masks=True))
    return model, sp


def qat(model, per_channel: bool = False):
    QATController(per_channel=per_channel).prepare(model)
    gen = torch.Generator().manual_seed(3)
    model.train()
    with torch.no_grad():
        for _ in range(4):
            model(torch.randn(16, 3, 32, 32, generator=gen))
    return model


def rows(f) -> dict:
    return {r["layer"]: r for r in f.layers}


def test_fp32_export_agrees_and_keeps_every_zero(tmp_path):
    model, sp = pruned()
    (f,) = export_member(model, "final", tmp_path, res=32, batch=6)
    assert f.kind == "fp32" and f.opset >= 13
    assert f.agreement.ok and f.agreement.dynamic_batch_ok and f.agreement.max_abs_diff < 1e-4
    got = rows(f)
    for name in sp.names:  # the model's own zeros, counted exactly
        w = dict(model.named_parameters())[name]
        layer = name.rsplit(".", 1)[0]
        assert got[layer]["zeros"] == int((w == 0).sum()) and got[layer]["numel"] == w.numel()
        assert abs(got[layer]["sparsity"] - 0.8) < 0.01
    # a batch size never seen at export time runs
    sess = ort_session(tmp_path / "final_fp32.onnx")
    assert sess.run(None, {"input": np.random.randn(5, 3, 32, 32).astype(np.float32)})[0].shape == (5, 10)


@pytest.mark.parametrize("fmt, per_channel", [("qdq", False), ("qoperator", False), ("qoperator", True)])
def test_quantized_export_agrees_with_torch_int8_and_keeps_zeros(tmp_path, fmt, per_channel):
    model, sp = pruned()
    qat(model, per_channel)
    fp32, q = export_member(model, "final", tmp_path, res=32, fmt=fmt, batch=8)
    assert fp32.agreement.ok and q.agreement.ok and q.agreement.dynamic_batch_ok, q.agreement
    assert q.kind == fmt and q.opset >= 13
    proto = onnx.load(q.path)
    ops = Counter(n.op_type for n in proto.graph.node)
    assert not {"Constant", "ConstantOfShape", "Cast"} & set(ops)  # tidied
    consts, prod = initializers(proto), producers(proto)
    n_convs = sum(1 for m in model.modules() if hasattr(m, "weight_fake_quant") and m.weight.dim() == 4)
    if fmt == "qoperator":
        assert ops["QLinearConv"] == n_convs and ops["Conv"] == 0
        for node in proto.graph.node:
            if node.op_type == "QLinearConv":
                assert consts[node.input[3]].dtype == np.int8
                if per_channel:
                    assert consts[node.input[4]].shape == (consts[node.input[3]].shape[0],)
        # DeepSparse 1.8 runs per-channel QLinearConv densely: the report says so
        assert q.notes == ([PER_CHANNEL_NOTE] if per_channel else [])
    else:
        assert ops["Conv"] == n_convs and ops["QLinearConv"] == 0
        for node in proto.graph.node:
            if node.op_type == "Conv":  # every weight: an int8 initializer behind a DequantizeLinear
                dq = prod[node.input[1]]
                assert dq.op_type == "DequantizeLinear" and consts[dq.input[0]].dtype == np.int8
    got = rows(q)
    for name in sp.names:
        layer = name.rsplit(".", 1)[0]
        w = dict(model.named_parameters())[name]
        assert got[layer]["zeros"] >= int((w == 0).sum())  # every pruned weight is int8 zero
        assert got[layer]["sparsity"] == pytest.approx(q.model_sparsity[layer], abs=1e-12)
    # the fc layer stays float
    assert got["fc"]["dtype"] == "float32"


def test_torchvision_resnet_with_maxpool_exports_to_qoperator(tmp_path):
    model, sp = pruned("resnet18", sparsity=0.85)
    qat(model)
    fp32, q = export_member(model, "final", tmp_path, res=32, fmt="qoperator", batch=4)
    assert fp32.agreement.ok and q.agreement.ok and q.agreement.dynamic_batch_ok
    assert sum(1 for r in q.layers if r["op"] == "QLinearConv") == 20
    layer = rows(q)["layer4.1.conv2"]
    assert layer["sparsity"] >= 0.85 - 1e-3
    # float names resolve too, with the model's own zero fractions
    params = dict(model.named_parameters())
    by_layer = torch_layer_sparsity(model)
    for name in sp.names:
        w = params[name]
        assert by_layer[name.rsplit(".", 1)[0]] == pytest.approx(int((w == 0).sum()) / w.numel(), abs=1e-12)


def _fake_run(tmp_path, prepared: bool):
    from acdc_exp.config.compose import compose_config

    cfg = compose_config(["model.width=8", "quantization=qat"])
    with open_dict(cfg):
        cfg.paths.run_dir = str(tmp_path)
    model, sp = pruned()
    if prepared:
        qat(model)
    ck = tmp_path / "checkpoints"
    ck.mkdir(parents=True)
    torch.save(
        {
            "model": model.state_dict(),
            "quantizer": {"prepared": prepared},
            "sparsifier": sp.state_dict(),
            "config": OmegaConf.to_container(cfg, resolve=True),
        },
        ck / "final.pt",
    )
    return model


def test_acdc_export_console_script(tmp_path):
    _fake_run(tmp_path, prepared=True)
    proc = run_cli("acdc-export", f"checkpoint={tmp_path}", "format=qoperator")
    assert proc.returncode == 0, proc.stderr
    assert "final_int8_qoperator.onnx" in proc.stdout and "| layer1.0.conv1 | QLinearConv | int8" in proc.stdout
    report = json.loads((tmp_path / "export" / "export_report.json").read_text())
    assert report["all_ok"] and [f["kind"] for f in report["files"]] == ["fp32", "qoperator"]
    assert (tmp_path / "export" / "final_fp32.onnx").stat().st_size > 0
    # no dense member in this run: asking for it is a one-line error
    assert "no dense member" in one_error_line(run_cli("acdc-export", f"checkpoint={tmp_path}", "member=dense"), "acdc-export")
