"""QAT trains in fp32 whatever trainer.amp says (issue 20, item 1): a bf16 run on CPU uses
autocast in its float phases and none from the QAT step on, also after a resume inside QAT,
and its int8 model agrees with its fake-quant model as closely as the fp32 run's does
(tests/e2e/test_qat_train.py holds the fp32 run to the same bounds)."""

from __future__ import annotations

import pytest
import torch
import torch.ao.quantization as tq
from conftest import QAT_RUN, int8_vs_qat, load_state, train
from torch import nn

QAT_FIRST_STEP = 88  # quantization.start_epoch=4 x 22 steps per epoch
STOP_INSIDE_QAT = 100


def _record_autocast(calls: list):
    """A global forward pre-hook: for every forward of the whole model (the module holding the
    QuantStub) in train mode, (autocast on?, fake quantization present?)."""

    def hook(module: nn.Module, args) -> None:
        if module.training and isinstance(getattr(module, "quant", None), tq.QuantStub):
            has_fq = any(isinstance(m, tq.FakeQuantizeBase) for m in module.modules())
            calls.append((torch.is_autocast_enabled("cpu"), has_fq))

    return nn.modules.module.register_module_forward_pre_hook(hook)


@pytest.fixture(scope="module")
def bf16_qat_run(tmp_path_factory):
    """QAT_RUN under bf16, stopped inside QAT and resumed to the end."""
    run_dir = tmp_path_factory.mktemp("bf16qat") / "run"
    run_dir.mkdir()
    calls: list = []
    handle = _record_autocast(calls)
    try:
        first = train([*QAT_RUN, "trainer.amp=bf16", f"trainer.max_steps={STOP_INSIDE_QAT}"], run_dir)
        stopped = load_state(run_dir / "checkpoints" / "last.pt")
        n_first = len(calls)
        summary = train([*QAT_RUN, "trainer.amp=bf16"], run_dir)
    finally:
        handle.remove()
    return run_dir, first, stopped, calls, n_first, summary


def test_autocast_is_off_from_the_qat_step_on(bf16_qat_run):
    _, first, stopped, calls, n_first, summary = bf16_qat_run
    assert first.get("interrupted") and stopped["step"] == STOP_INSIDE_QAT
    assert stopped["precision"] == "off"  # the checkpoint records QAT's fp32
    float_phase = [on for on, fq in calls if not fq]
    qat_phase = [on for on, fq in calls if fq]
    # the 88 steps before QAT, and the BN recalibrations before their evaluations
    assert len(float_phase) >= QAT_FIRST_STEP and all(float_phase)  # bf16 until QAT
    assert qat_phase and not any(qat_phase)  # fp32 in QAT, before and after the resume
    assert any(fq for _, fq in calls[n_first:])  # the resumed part trained with fake quantization
    assert summary["resumed_at_steps"] == [STOP_INSIDE_QAT]
    assert summary["amp_dtype"] == "bf16" and summary["qat_amp_dtype"] == "off"


def test_bf16_runs_int8_model_agrees_with_its_qat_model(bf16_qat_run):
    run_dir, *_, summary = bf16_qat_run
    r = int8_vs_qat(["run", str(run_dir)])
    worst = max(r["layers"], key=lambda row: row["frac_over_one_step"])
    # the fp32 run's bounds (test_qat_train.test_int8_model_computes_what_its_qat_model_computes)
    assert worst["frac_over_one_step"] < 0.005, worst
    assert r["top1_agreement"] >= 0.97
    # top-1 itself moves by whole images (0.28 points each on 360): int8 no worse than a point
    assert r["int8_top1"] >= r["qat_top1"] - 1.0
    assert summary["sparse_int8_top1"] >= summary["qat_top1"] - 1.0
