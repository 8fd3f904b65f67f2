"""Deployment: every export loads in onnxruntime and DeepSparse 1.8 (opsets and IR versions
per format, user overrides), the QOperator file runs 100% in DeepSparse with the torch int8
model's top-1 on digits, and ``acdc-export benchmark.enabled=true`` reports speed on a real digits run
(console table, speed_report.json, the run's W&B record).

DeepSparse lives in its own venv (``make deepsparse``; ``make test`` creates it): its tests
are skipped where it is not set up."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from conftest import one_error_line, run_cli
from test_export import pruned, qat
from wandb_records import read_run

from acdc_exp.deploy.deepsparse_runner import deepsparse_predict, deepsparse_python, run_deepsparse
from acdc_exp.deploy.export import export_member
from acdc_exp.deploy.onnx_check import ort_session
from acdc_exp.deploy.onnx_compat import DEFAULT_OPSET, OnnxVersions
from acdc_exp.errors import ConfigError

needs_deepsparse = pytest.mark.skipif(deepsparse_python() is None, reason="DeepSparse venv not set up (make deepsparse)")
# the loaders DeepSparse 1.8 bundles (its ONNX Runtime): IR <= 9, ai.onnx opset <= 19
DEEPSPARSE_MAX_IR, DEEPSPARSE_MAX_OPSET = 9, 19


def _opset(model: onnx.ModelProto) -> int:
    return max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """fp32 + qdq + qoperator files of a pruned QAT small ResNet (random weights)."""
    out = tmp_path_factory.mktemp("deploy")
    model, _ = pruned()
    model = qat(model)
    files = export_member(model, "final", out, res=32, fmt="qdq", batch=4)
    files += [f for f in export_member(model, "final", out, res=32, fmt="qoperator", batch=4) if f.kind == "qoperator"]
    return {f.kind: f for f in files}


def test_default_opsets_and_ir_versions_fit_deepsparse(exported):
    assert set(exported) == {"fp32", "qdq", "qoperator"}
    for kind, f in exported.items():
        proto = onnx.load(f.path)
        family = "fp32" if kind == "fp32" else "int8"
        assert _opset(proto) == f.opset == DEFAULT_OPSET[family]
        # the lowest IR version the opset needs (opset 18 -> IR 8, opset 13 -> IR 7)
        assert proto.ir_version == f.ir_version == {"fp32": 8, "int8": 7}[family]
        assert proto.ir_version <= DEEPSPARSE_MAX_IR and _opset(proto) <= DEEPSPARSE_MAX_OPSET
        assert f.agreement.ok and f.agreement.dynamic_batch_ok
    ops = {n.op_type for n in onnx.load(exported["fp32"].path).graph.node}
    assert "GlobalAveragePool" in ops and "ReduceMean" not in ops


def test_user_overrides_of_opset_and_ir_version(tmp_path):
    model, _ = pruned()
    model = qat(model)
    files = export_member(
        model,
        "final",
        tmp_path,
        res=32,
        fmt="qoperator",
        batch=4,
        versions=OnnxVersions(opset_fp32=19, opset_int8=17, ir_version=9),
    )
    got = {f.kind: onnx.load(f.path) for f in files}
    assert _opset(got["fp32"]) == 19 and _opset(got["qoperator"]) == 17
    assert got["fp32"].ir_version == got["qoperator"].ir_version == 9
    assert all(f.agreement.ok for f in files)
    for bad, allowed in [
        (OnnxVersions(opset_fp32=17), "allowed: 18.."),
        (OnnxVersions(opset_int8=12), "allowed: 13.."),
        (OnnxVersions(ir_version=99), "allowed: 3.."),
    ]:
        with pytest.raises(ConfigError, match=allowed):
            bad.check()
    with pytest.raises(ConfigError, match=r"ir_version=7 is too old for opset .*19.*allowed: 9\.\."):
        export_member(model, "final", tmp_path, res=32, versions=OnnxVersions(opset_fp32=19, ir_version=7))


@needs_deepsparse
def test_every_export_loads_in_deepsparse_and_qoperator_runs_fully(exported):
    answer = run_deepsparse(
        {
            "files": [f.path for f in exported.values()],
            "threads": 1,
            "batches": [1, 3],
            "repeats": {"1": 2, "3": 2},
            "warmup": {"1": 1, "3": 1},
            "res": 32,
            "seed": 0,
        }
    )
    assert answer["deepsparse"] == "1.8.0"
    for kind, f in exported.items():
        got = answer["files"][f.path]
        assert "error" not in got, (kind, got)
        assert len(got["batches"]["3"]["times_s"]) == 2 and min(got["batches"]["1"]["times_s"]) > 0
    # the sparse engine runs all of fp32 and QOperator; QDQ loads but falls back (it is ORT's form)
    assert answer["files"][exported["fp32"].path]["fraction_supported"] == 1.0
    assert answer["files"][exported["qoperator"].path]["fraction_supported"] == 1.0


@needs_deepsparse
def test_deepsparse_outputs_match_onnxruntime(exported, tmp_path):
    """Same file, both engines, 24 random images: the same classes (fp32 bit-close, so exact)."""
    images = np.random.default_rng(5).standard_normal((24, 3, 32, 32), dtype=np.float32)
    f = exported["fp32"]
    sess = ort_session(Path(f.path))
    want = sess.run(None, {sess.get_inputs()[0].name: images})[0].argmax(1)
    got = deepsparse_predict([Path(f.path)], images, threads=1, batch=8, workdir=tmp_path)
    assert got["files"][f.path]["predictions"] == [int(c) for c in want]


def test_benchmark_cli_on_a_digits_run(qat_run, tmp_path):
    run_dir, summary = qat_run
    out = tmp_path / "onnx"
    benchmark = ["benchmark.enabled=true", "benchmark.threads=1", "benchmark.batch=4", "benchmark.repeats=3"]
    proc = run_cli(
        "acdc-export",
        f"checkpoint={run_dir}",
        "format=qoperator",
        f"out={out}",
        *benchmark,
        "benchmark.batch_repeats=2",
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((out / "speed_report.json").read_text())
    files = ["dense_fp32.onnx", "final_fp32.onnx", "final_int8_qoperator.onnx"]
    engines = ["onnxruntime"] + (["deepsparse"] if deepsparse_python() is not None else [])
    assert [(r["file"], r["engine"]) for r in report["rows"]] == [(f, e) for e in engines for f in files]
    assert report["baseline"] == {"file": "dense_fp32.onnx", "engine": "onnxruntime"}
    assert report["settings"]["threads"] == 1 and report["settings"]["batch"] == 4 and report["settings"]["res"] == 32
    assert report["machine"]["cpu_model"] and "cpu_flags" in report["machine"]
    for r in report["rows"]:
        assert r["error"] is None and r["latency_ms"] > 0 and r["images_per_s"] > 0
        base = report["rows"][0]
        assert r["speedup_b1"] == pytest.approx(base["latency_ms"] / r["latency_ms"])
        assert r["speedup_batch"] == pytest.approx(r["images_per_s"] / base["images_per_s"])
        if r["engine"] == "deepsparse":
            assert r["supported"] == 1.0
    # the console table: one line per row, numbers as in the JSON
    table = proc.stdout[proc.stdout.index("### Speed") :]
    for r in report["rows"]:
        assert f"| {r['file']} | {r['engine']} |" in table and f"{r['latency_ms']:.2f}" in table
    # the run's W&B record now holds the report (read back from the .wandb files)
    run = read_run(run_dir / "wandb")
    assert run.run_id == summary["wandb_run_id"]
    key = "speed/final_int8_qoperator.onnx/onnxruntime/latency_ms"
    assert run.summary[key] == pytest.approx(report["rows"][2]["latency_ms"])
    assert run.summary["speed/threads"] == 1 and "speed/table" in run.summary


@needs_deepsparse
def test_deepsparse_int8_top1_matches_torch_int8_on_digits(qat_run, tmp_path):
    from acdc_exp.quantization.qat import convert_to_int8
    from acdc_exp.runs.export import val_images as _val_images
    from acdc_exp.runs.members import load_member

    run_dir, summary = qat_run
    model, _, config = load_member(str(run_dir / "checkpoints" / "final.pt"), "final")
    files = export_member(model, "final", tmp_path, res=32, fmt="qoperator", batch=8)
    qfile = next(f for f in files if f.kind == "qoperator")
    images = _val_images(config, 10_000)  # the whole validation split
    labels = _val_labels(config)
    assert len(images) == len(labels) == 360
    with torch.no_grad():
        torch_pred = convert_to_int8(model, "x86")(images).argmax(1).numpy()
    got = deepsparse_predict([Path(qfile.path)], images.numpy(), threads=1, batch=32, workdir=tmp_path)
    ds_pred = np.array(got["files"][qfile.path]["predictions"])
    torch_top1, ds_top1 = 100 * (torch_pred == labels).mean(), 100 * (ds_pred == labels).mean()
    assert torch_top1 > 90
    assert abs(ds_top1 - torch_top1) <= 0.5, (ds_top1, torch_top1)


def _val_labels(config) -> np.ndarray:
    from acdc_exp.data import build_data
    from acdc_exp.runs.evaluate import compose_for_member as _compose

    cfg = _compose([], config)
    data = build_data(cfg.data, data_cache=str(cfg.paths.data_cache), device=torch.device("cpu"), seed=int(cfg.seed))
    return torch.cat([y for _, y in data.val_batches()]).numpy()


@pytest.mark.parametrize(
    "args, message",
    [
        (["benchmark.enabled=true", "benchmark.threads=0"], "benchmark.threads=0 must be a positive integer"),
        (["benchmark.threads=2"], "benchmark.threads=2 only applies with benchmark.enabled=true"),
        (
            ["benchmark.enabled=true", "benchmark.deepsparse=maybe"],
            "benchmark.deepsparse='maybe' is not allowed; allowed: auto, off, required",
        ),
        (["onnx.opset_fp32=12"], "onnx.opset_fp32=12 is not supported; allowed: 18.."),
        (["benchmark.treads=2"], "benchmark.treads"),  # a typo is Hydra's error, on one line
        (["--benchmark"], "--benchmark is now the override benchmark.enabled=true"),
    ],
)
def test_cli_bad_values_are_one_line(qat_run, args, message):
    run_dir, _ = qat_run
    before = sorted(p.name for p in run_dir.rglob("*"))
    assert message in one_error_line(run_cli("acdc-export", f"checkpoint={run_dir}", *args), "acdc-export")
    assert sorted(p.name for p in run_dir.rglob("*")) == before  # nothing written


def _mean_graph(axes: list[int], keepdims: int) -> onnx.ModelProto:
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4, 3, 5])
    rank = 4 if keepdims else 4 - len(axes)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None] * rank)
    axes_init = numpy_helper.from_array(np.array(axes, np.int64), "axes")
    node = helper.make_node("ReduceMean", ["x", "axes"], ["y"], keepdims=keepdims)
    graph = helper.make_graph([node], "g", [x], [y], [axes_init])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


@pytest.mark.parametrize(
    "axes, keepdims, pooled",
    [
        ([2, 3], 1, True),
        ([-1, -2], 1, True),  # the spatial mean: a global average pool
        ([2, 3], 0, False),
        ([1], 1, False),
        ([1, 2, 3], 1, False),  # anything else stays
    ],
)
def test_pool_from_spatial_mean_rewrites_only_the_global_pool(tmp_path, axes, keepdims, pooled):
    from acdc_exp.deploy.onnx_compat import pool_from_spatial_mean

    model = _mean_graph(axes, keepdims)
    x = np.random.default_rng(0).standard_normal((2, 4, 3, 5), dtype=np.float32)
    before, after = tmp_path / "before.onnx", tmp_path / "after.onnx"
    onnx.save(model, before)
    rewritten = pool_from_spatial_mean(onnx.load(before))
    onnx.checker.check_model(rewritten)
    onnx.save(rewritten, after)
    assert [n.op_type for n in rewritten.graph.node] == ["GlobalAveragePool" if pooled else "ReduceMean"]
    want = ort_session(before).run(None, {"x": x})[0]
    got = ort_session(after).run(None, {"x": x})[0]
    assert got.shape == want.shape and np.allclose(got, want, atol=1e-6)
