"""What a result was measured on: CPU model, the instruction sets int8 speed and exactness
depend on, Python and the key package versions.

One description for every place that records a machine: benchmarks, the test-run header,
set-up's closing report and the QAT int8 check. Standard library only (no torch import), so
set-up can print it before anything heavy loads.

    python -m acdc_exp.machine          # the report as text
"""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, List, Sequence

KEY_PACKAGES = ("torch", "torchvision", "onnxruntime", "onnx", "numpy", "wandb", "hydra-core", "ffcv", "numba")
# ISA flags (as /proc/cpuinfo spells them) that decide int8/bf16 kernel paths
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
# u8 x s8 dot products accumulate in int32 only with these; without them (AVX2's vpmaddubsw)
# pairs of products saturate at int16 in fbgemm, oneDNN and onnxruntime's kernels
INT8_DOT_FLAGS = ("avx512_vnni", "amx_int8")
# Kernel ISA overrides (tests use them to compute like a CPU without VNNI on one with it):
# fbgemm's FBGEMM_ENABLE_INSTRUCTIONS values without VNNI (AVX512_E1* are with it), and the
# ONEDNN_MAX_CPU_ISA caps that include VNNI (AVX512_CORE_VNNI/_BF16/_FP16/_AMX..., AVX10_*)
FBGEMM_NO_DOT_ISAS = ("AVX2", "AVX512", "AVX512_256")
ONEDNN_DOT_ISA_PREFIXES = ("AVX512_CORE", "AVX10")


def _cpuinfo_field(field: str) -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":", 1)[0].strip() == field:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def cpu_model() -> str:
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


def cpu_flags() -> List[str]:
    """The ISA flags of ``ISA_FLAGS`` this CPU reports, in that order."""
    have = set(_cpuinfo_field("flags").split())
    return [f for f in ISA_FLAGS if f in have]


def cpu_has_int8_dot_product() -> bool:
    """True when the CPU itself has u8 x s8 dot products with int32 sums (VNNI/AMX)."""
    return any(f in cpu_flags() for f in INT8_DOT_FLAGS)


def _env_isa(names: Sequence[str]) -> str:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value.upper()
    return ""


def fbgemm_uses_int8_dot_product() -> bool:
    """fbgemm's int8 kernels on this machine: the CPU's ISA unless FBGEMM_ENABLE_INSTRUCTIONS
    forces a lower one (read by fbgemm, case-insensitively; an unknown value is ignored)."""
    forced = _env_isa(["FBGEMM_ENABLE_INSTRUCTIONS"])
    if forced in FBGEMM_NO_DOT_ISAS:
        return False
    return cpu_has_int8_dot_product()


def onednn_uses_int8_dot_product() -> bool:
    """oneDNN's int8 kernels on this machine: the CPU's ISA capped by ONEDNN_MAX_CPU_ISA (or
    its old name DNNL_MAX_CPU_ISA). A cap oneDNN names below AVX512_CORE_VNNI, or one this
    list does not know, counts as no dot product: wrongly so only costs a slower exact engine."""
    cap = _env_isa(["ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"])
    if cap and cap not in ("ALL", "DEFAULT") and not (cap.startswith(ONEDNN_DOT_ISA_PREFIXES) and cap != "AVX512_CORE"):
        return False
    return cpu_has_int8_dot_product()


def int8_engine_exact(engine: str) -> bool:
    """Whether torch's quantized ``engine`` sums u8 x s8 products in int32 on this machine, as
    its kernels will run here (CPU flags and the kernel libraries' ISA overrides). qnnpack
    always widens to int32; x86 runs convs on oneDNN or fbgemm and linears on fbgemm."""
    if engine == "qnnpack":
        return True
    if engine == "fbgemm":
        return fbgemm_uses_int8_dot_product()
    if engine == "onednn":
        return onednn_uses_int8_dot_product()
    if engine == "x86":
        return fbgemm_uses_int8_dot_product() and onednn_uses_int8_dot_product()
    return False


def has_int8_dot_product() -> bool:
    """True when this process's int8 GEMM/conv kernels (fbgemm and oneDNN, as torch's x86
    engine uses them) accumulate u8 x s8 products without int16 saturation."""
    return int8_engine_exact("x86")


def affinity_cpus() -> int:
    """CPUs this process may run on (its affinity mask; the core count where there is none)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def package_versions(names: Sequence[str] = KEY_PACKAGES) -> Dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def describe() -> Dict[str, Any]:
    """The machine and environment, as recorded beside every measurement."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_flags": cpu_flags(),
        "int8_dot_product": has_int8_dot_product(),
        "cpus": os.cpu_count(),
        "cpus_usable": affinity_cpus(),
        "versions": package_versions(),
    }


def format_report(info: Dict[str, Any]) -> str:
    versions = "  ".join(f"{k} {v}" for k, v in info["versions"].items())
    return (
        f"python {info['python']} on {info['platform']}\n"
        f"cpu {info['cpu_model']} ({info['cpus_usable']}/{info['cpus']} usable), "
        f"flags: {' '.join(info['cpu_flags']) or 'none of ' + '/'.join(ISA_FLAGS)}\n"
        f"{versions}"
    )


if __name__ == "__main__":
    print(format_report(describe()))
