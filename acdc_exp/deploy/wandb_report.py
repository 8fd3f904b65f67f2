"""Add a speed report to the W&B run that trained the checkpoint: the run is resumed by its id
(same mode, project and entity as the run's logger config), the table is logged as
``speed/table`` and each row's numbers as summary keys ``speed/<file>/<engine>/<metric>``."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

from acdc_exp.deploy.report import SpeedRow

TABLE_KEY = "speed/table"
ROW_METRICS = ("latency_ms", "images_per_s", "speedup_b1", "speedup_batch", "supported")
COLUMNS = tuple(f.name for f in fields(SpeedRow))  # the table shows every field of a row


def summary_keys(report: Mapping[str, Any]) -> Dict[str, float]:
    out: Dict[str, float] = {}
    for r in report["rows"]:
        for metric in ROW_METRICS:
            if r.get(metric) is not None:
                out[f"speed/{r['file']}/{r['engine']}/{metric}"] = float(r[metric])
    return out


def log_speed_report(report: Mapping[str, Any], *, run_dir: Path, run_id: str, logger_cfg: Mapping[str, Any]) -> Optional[str]:
    """Resume run ``run_id`` and log the report; returns the run's sync file (offline mode).
    ``logger_cfg``: the run's saved W&B logger config (configs/logger/wandb.yaml, resolved)."""
    import wandb  # wandb only for W&B runs

    mode = str(logger_cfg["mode"])
    run = wandb.init(
        id=run_id,
        resume="allow",
        mode=mode,
        dir=str(run_dir),
        project=logger_cfg["project"],
        entity=logger_cfg["entity"],
        reinit="create_new",
        settings=wandb.Settings(quiet=True),
    )
    try:
        table = wandb.Table(columns=list(COLUMNS), data=[[r.get(c) for c in COLUMNS] for r in report["rows"]])
        run.log({TABLE_KEY: table})
        run.summary.update(summary_keys(report))
        run.summary.update(
            {
                "speed/threads": report["settings"]["threads"],
                "speed/batch": report["settings"]["batch"],
                "speed/cpu_model": report["machine"].get("cpu_model"),
            }
        )
        return None if mode == "disabled" else str(run.settings.sync_file)
    finally:
        run.finish()
