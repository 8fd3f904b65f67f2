"""Inference speed of exported ONNX files: onnxruntime in this process, DeepSparse (optional,
in its own venv) as a subprocess, and the report ``acdc-export benchmark.enabled=true`` prints."""

from acdc_exp.speed.deepsparse_runner import deepsparse_python, run_deepsparse
from acdc_exp.speed.ort_timing import Timing, time_ort
from acdc_exp.speed.report import BenchSettings, SpeedRow, format_speed_table, speed_report

__all__ = [
    "BenchSettings",
    "SpeedRow",
    "Timing",
    "deepsparse_python",
    "format_speed_table",
    "run_deepsparse",
    "speed_report",
    "time_ort",
]
