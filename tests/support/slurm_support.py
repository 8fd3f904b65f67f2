"""Helpers for tests that need the local one-node SLURM cluster (scripts/slurm_local.sh).

``ensure_slurm_cluster()`` is what a session fixture calls: it starts the cluster (installing
SLURM when missing) once per test process and raises with the script's reason when it cannot.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[2]
SLURM_SCRIPT = REPO / "scripts" / "slurm_local.sh"
# Hydra loads launcher presets from here: pass it as --config-dir (or it is the app's config dir)
CONFIGS_DIR = REPO / "configs"
VENV_PYTHON = Path(sys.executable)

_cluster_host: Optional[str] = None


class SlurmClusterError(RuntimeError):
    """The local SLURM cluster could not be started or did not answer."""


def ensure_slurm_cluster(timeout_s: float = 900.0) -> str:
    """Run ``slurm_local.sh up`` (once per process) and return the node's hostname.

    The first call on a fresh machine apt-installs SLURM, so the timeout is generous;
    later calls return the cached answer.
    """
    global _cluster_host
    if _cluster_host is not None:
        return _cluster_host
    try:
        proc = subprocess.run(
            ["bash", str(SLURM_SCRIPT), "up"], capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as exc:
        raise SlurmClusterError(f"'slurm_local.sh up' did not finish within {timeout_s:.0f}s") from exc
    if proc.returncode != 0:
        reason = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise SlurmClusterError(f"'slurm_local.sh up' failed (exit {proc.returncode}): {reason[-1] if reason else 'no output'}")
    _cluster_host = socket.gethostname()
    return _cluster_host


def job_state(job_id: str) -> str:
    """SLURM state of a job (PENDING, RUNNING, COMPLETED, ...) from slurmctld's memory.

    Reads ``scontrol show job``, which answers at once (sacct lags a moment behind the
    controller); finished jobs stay visible for MinJobAge (300 s), use sacct after that.
    """
    out = subprocess.run(["scontrol", "show", "job", "-o", str(job_id)], capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise SlurmClusterError(f"scontrol show job {job_id} failed: {out.stderr.strip()}")
    for field in out.stdout.split():
        if field.startswith("JobState="):
            return field.split("=", 1)[1]
    raise SlurmClusterError(f"no JobState in 'scontrol show job {job_id}' output")


def wait_for_file(path: Path, timeout_s: float, poll_s: float = 0.5) -> bool:
    """Poll until ``path`` exists; True if it appeared within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists():
            return True
        time.sleep(poll_s)
    return path.exists()
