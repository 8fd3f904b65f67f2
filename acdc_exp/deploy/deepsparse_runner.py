"""DeepSparse as a subprocess: it lives in its own venv (``scripts/setup_deepsparse.sh``) because
it pins numpy 1.26 and onnx 1.14, which conflict with this project's. ``deepsparse_worker.py``
runs there and answers one JSON request; nothing here imports deepsparse.

DeepSparse is end-of-life (Neural Magic, June 2025) and under its own licence (the Neural
Magic DeepSparse Community License): it is optional, and every caller copes with its absence.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import numpy as np

from acdc_exp.errors import ConfigError

ENV_PYTHON = "ACDC_DEEPSPARSE_PYTHON"  # the venv's python, where the default place does not fit
VENV_DIR = ".venv-deepsparse"  # scripts/setup_deepsparse.sh creates it in the project root
WORKER = Path(__file__).with_name("deepsparse_worker.py")


def deepsparse_python() -> Optional[Path]:
    """The DeepSparse venv's interpreter, or None when it is not set up."""
    configured = os.environ.get(ENV_PYTHON)
    if configured:
        path = Path(configured)
        if not path.is_file():
            raise ConfigError(f"{ENV_PYTHON}={configured!r} is not a file; allowed: the python of a venv holding deepsparse")
        return path
    default = Path(__file__).resolve().parents[2] / VENV_DIR / "bin" / "python"
    return default if default.is_file() else None


def run_deepsparse(request: Dict[str, Any], timeout_s: float = 3600.0) -> Dict[str, Any]:
    """Send ``request`` (see ``deepsparse_worker``) to the worker; returns its answer. Raises
    RuntimeError with the worker's last stderr line when it fails as a whole."""
    python = deepsparse_python()
    if python is None:
        raise RuntimeError(f"DeepSparse is not set up: run scripts/setup_deepsparse.sh (or set {ENV_PYTHON})")
    env = dict(os.environ, NM_DISABLE_ANALYTICS="1")
    # -I: isolated, so the worker sees the DeepSparse venv alone (no PYTHONPATH, no script dir)
    proc = subprocess.run(
        [str(python), "-I", str(WORKER)], input=json.dumps(request), capture_output=True, text=True, timeout=timeout_s, env=env
    )
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        raise RuntimeError(f"DeepSparse worker failed (exit {proc.returncode}): {lines[-1] if lines else 'no message'}")
    return json.loads(proc.stdout)


def deepsparse_predict(paths: Sequence[Path], images: np.ndarray, *, threads: int, batch: int, workdir: Path) -> Dict[str, Any]:
    """Argmax classes of ``images`` (N x 3 x H x W) through each file in DeepSparse."""
    npy = workdir / "deepsparse_inputs.npy"
    np.save(npy, np.ascontiguousarray(images, dtype=np.float32))
    try:
        return run_deepsparse(
            {"files": [str(p) for p in paths], "threads": threads, "predict": {"inputs": str(npy), "batch": batch}}
        )
    finally:
        npy.unlink(missing_ok=True)


__all__ = ["ENV_PYTHON", "VENV_DIR", "deepsparse_predict", "deepsparse_python", "run_deepsparse"]
