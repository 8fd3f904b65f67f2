"""``acdc-export``: ONNX files of a run's members, checked with onnxruntime, and optionally
the speed report. A Hydra app on configs/export.yaml (``acdc-export --help``):

    acdc-export checkpoint=runs/digits_acdc/2024-..            # dense + final, QDQ int8
    acdc-export checkpoint=RUN member=final format=qoperator out=onnx/
    acdc-export checkpoint=RUN format=qoperator benchmark.enabled=true benchmark.threads=2
"""

from __future__ import annotations

from pathlib import Path
from typing import List

from omegaconf import DictConfig

from acdc_exp.cli.common import die, guarded, hydra_command

PROG = "acdc-export"
# the flag of the key=value parser this command had before it ran on Hydra
RENAMED_FLAGS = {"--benchmark": "benchmark.enabled=true"}


def _task(cfg: DictConfig, overrides: List[str]) -> None:
    from acdc_exp.runs.export import export_from_config  # lazy: --help and bad overrides answer before torch loads

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
    hydra_command(PROG, "export", _task, RENAMED_FLAGS)


if __name__ == "__main__":
    main()
