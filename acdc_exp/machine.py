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


def has_int8_dot_product() -> bool:
    """True when int8 GEMM/conv kernels accumulate u8 x s8 products without int16 saturation."""
    return any(f in cpu_flags() for f in INT8_DOT_FLAGS)


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
