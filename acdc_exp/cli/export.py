"""``acdc-export``: ONNX files of a run's members, checked with onnxruntime, and optionally
the speed report. A Hydra app on configs/export.yaml (``acdc-export --help``):

    acdc-export checkpoint=runs/digits_acdc/2024-..            # dense + final, QDQ int8
    acdc-export checkpoint=RUN member=final format=qoperator out=onnx/
    acdc-export checkpoint=RUN format=qoperator benchmark.enabled=true benchmark.threads=2
"""

from __future__ import annotations

import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from acdc_exp.cli.common import die, guarded, hydra_command

PROG = "acdc-export"
# the flag of the key=value parser this command had before it ran on Hydra
OLD_BENCHMARK_FLAG = "--benchmark"


def _task(cfg: DictConfig) -> None:
    from acdc_exp.runs.export import export_from_config  # lazy: --help and bad overrides answer before torch loads

    overrides = list(HydraConfig.get().overrides.task)
    report = guarded(PROG, lambda: export_from_config(cfg, overrides))
    print(report["table"])
    print(f"report: {Path(report['out_dir']) / 'export_report.json'}")
    if "speed" in report:
        print(report["speed"]["table"])
        print(f"speed report: {Path(report['out_dir']) / 'speed_report.json'}")
        if report["speed"]["wandb"]:
            print(f"W&B: added to run {report['speed']['wandb']['run_id']}")
    if not report["all_ok"]:
        die(PROG, "an exported file disagrees with PyTorch beyond its bound (see the table)", code=1)


def main() -> None:
    if OLD_BENCHMARK_FLAG in sys.argv[1:]:
        die(PROG, f"{OLD_BENCHMARK_FLAG} is now the override benchmark.enabled=true")
    hydra_command(PROG, "export", _task)


if __name__ == "__main__":
    main()
