"""Atomic checkpoint files: written to a temporary file beside the target, then renamed, so
a crash or preemption mid-write never leaves a half-written or lost checkpoint."""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import torch

from acdc_exp.errors import CheckpointError

LAST = "last.pt"
# the files of a finished run's members, under <run_dir>/checkpoints/
MEMBER_FILES = {"final": "final.pt", "dense": "dense.pt", "int8": "final_int8.pt", "last": LAST}


def save_atomic(obj: Any, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load(path: str | os.PathLike) -> Dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        candidate = path / "checkpoints" / LAST
        path = candidate if candidate.exists() else path / LAST
    if not path.exists():
        raise CheckpointError(f"checkpoint={str(path)!r} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise CheckpointError(f"checkpoint={str(path)!r} is not a readable torch checkpoint ({type(exc).__name__})") from None
    if not isinstance(obj, dict) or "model" not in obj:
        raise CheckpointError(f"checkpoint={str(path)!r} holds no 'model' state; is it an acdc-exp checkpoint?")
    return obj


def rng_state() -> Dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def resolve_resume(resume: str, run_dir: Path) -> Optional[Path]:
    """Which checkpoint to resume from: ``auto`` (run dir's last.pt if any), ``never``, or a path."""
    if resume in ("never", "false", "False", "", "none", "None"):
        return None
    if resume in ("auto", "true", "True"):
        last = run_dir / "checkpoints" / LAST
        if resume == "auto":
            return last if last.exists() else None
        if not last.exists():
            raise CheckpointError(f"trainer.resume={resume}: no checkpoint at {last}")
        return last
    path = Path(resume)
    if path.is_dir():
        path = path / "checkpoints" / LAST
    if not path.exists():
        raise CheckpointError(f"trainer.resume={resume!r}: no checkpoint there (expected a .pt file or a run dir)")
    return path
