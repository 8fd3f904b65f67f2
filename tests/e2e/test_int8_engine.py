"""The int8 score is exact on any CPU: which engine scores it (the kernel ISA overrides in the
environment count), and, with AVX2-only kernels forced, a model with 8-bit activations scored
through the run's int8 path and acdc-eval's agrees with its fake-quantized model where the raw
x86 engine saturates."""

from __future__ import annotations

import pytest
from conftest import AVX2_INT8_KERNELS, int8_vs_qat

from acdc_exp import machine
from acdc_exp.quantization.qat import QATController

ISA_ENV = ("FBGEMM_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")


@pytest.fixture
def vnni_cpu(monkeypatch):
    """A CPU with VNNI and no kernel ISA override in the environment."""
    monkeypatch.setattr(machine, "cpu_flags", lambda: ["avx2", "avx512f", "avx512_vnni"])
    for name in ISA_ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    "env, fbgemm, onednn",
    [
        ({}, True, True),
        ({"FBGEMM_ENABLE_INSTRUCTIONS": "AVX2"}, False, True),
        ({"FBGEMM_ENABLE_INSTRUCTIONS": "avx512"}, False, True),  # fbgemm upper-cases the value
        ({"FBGEMM_ENABLE_INSTRUCTIONS": "AVX512_E1"}, True, True),
        ({"FBGEMM_ENABLE_INSTRUCTIONS": "NONSENSE"}, True, True),  # fbgemm ignores unknown values
        ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, True, False),
        ({"DNNL_MAX_CPU_ISA": "AVX512_CORE"}, True, False),
        ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_VNNI"}, True, True),
        ({"ONEDNN_MAX_CPU_ISA": "AVX10_1_512_AMX"}, True, True),
        ({"ONEDNN_MAX_CPU_ISA": "ALL"}, True, True),
    ],
)
def test_kernel_isa_overrides_decide_exactness(vnni_cpu, env, fbgemm, onednn):
    for name, value in env.items():
        vnni_cpu.setenv(name, value)
    assert machine.int8_engine_exact("fbgemm") is fbgemm
    assert machine.int8_engine_exact("onednn") is onednn
    assert machine.int8_engine_exact("x86") is (fbgemm and onednn) is machine.has_int8_dot_product()
    assert machine.int8_engine_exact("qnnpack")


def test_engine_choice(vnni_cpu):
    eight_bit, seven_bit = QATController(reduce_range=False), QATController(reduce_range=True)
    assert eight_bit.int8_engine() == "x86" and seven_bit.int8_engine() == "x86"
    vnni_cpu.setattr(machine, "cpu_flags", lambda: ["avx2"])  # an AVX2-only CPU, no override
    assert eight_bit.int8_engine() == "qnnpack" and not eight_bit.backend_exact_on_this_cpu()
    assert eight_bit.int8_exact_on_this_cpu()  # the score is exact: qnnpack gives it
    assert seven_bit.int8_engine() == "x86"  # 7-bit activations cannot saturate
    assert QATController(reduce_range=False, backend="qnnpack").int8_engine() == "qnnpack"


def test_8bit_activations_scored_exactly_with_avx2_only_kernels():
    """The run's int8 path (int8_member) and acdc-eval's (load_member) on a QAT model trained
    on digits, kernels limited to AVX2 as on a CPU without VNNI: the int8 model computes what
    the fake-quantized one does (the one-step agreement of tests/e2e/test_qat_train.py), where the
    x86 engine under the same kernels saturates many steps off."""
    r = int8_vs_qat(["trained", "0"], AVX2_INT8_KERNELS)
    for weights, row in r.items():
        run = row["run_path"]
        worst = max(run["layers"], key=lambda layer: layer["frac_over_one_step"])
        assert worst["frac_over_one_step"] < 0.005, (weights, worst)
        assert run["top1_agreement"] >= 0.97
        assert abs(row["int8_top1"] - row["qat_top1"]) <= 1.0, (weights, row["int8_top1"], row["qat_top1"])
        assert row["acdc_eval_top1"] == row["int8_top1"]  # acdc-eval uses the same rule
        assert row["int8_engine"] == row["saved_engine"] == "qnnpack", weights  # recorded for the summary
        assert row["notes"] and "qnnpack" in row["notes"][0]
        # the cause, under the same kernels: the raw x86 engine's int16 pair sums saturate
        assert max(layer["max_steps"] for layer in row["raw_x86"]["layers"]) > 8, weights
    assert max(layer["frac_over_one_step"] for layer in r["per_channel"]["raw_x86"]["layers"]) > 0.1
