"""A tiny Hydra app for the SLURM smoke test: records its inputs and where it ran.

Run it as a multirun with a SLURM launcher preset, e.g.
  python tests/support/slurm_app/app.py -m --config-dir configs hydra/launcher=slurm_local x=2,3
Each job writes ``result.json`` into its own Hydra output dir.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig


@hydra.main(version_base=None, config_path=".", config_name="slurm_app")
def main(cfg: DictConfig) -> int:
    hc = HydraConfig.get()
    # a pause lets requeue/preemption tests act while the job is running
    time.sleep(float(cfg.sleep_s))
    result = {
        "x": int(cfg.x),
        "y": int(cfg.x) * int(cfg.scale),
        "job_num": int(hc.job.num),
        # set by slurmd in the job's environment: proof the job ran under SLURM
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "slurm_array_job_id": os.environ.get("SLURM_ARRAY_JOB_ID"),
        "slurm_array_task_id": os.environ.get("SLURM_ARRAY_TASK_ID"),
        "slurm_cpus_on_node": os.environ.get("SLURM_CPUS_ON_NODE"),
        # 0 on the first run, 1 after one requeue, ...
        "slurm_restart_count": int(os.environ.get("SLURM_RESTART_COUNT", "0")),
        "hostname": socket.gethostname(),
    }
    Path(hc.runtime.output_dir, "result.json").write_text(json.dumps(result))
    return result["y"]


if __name__ == "__main__":
    main()
