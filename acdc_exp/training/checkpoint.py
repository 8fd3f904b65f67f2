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

from acdc_exp import run_layout as layout
from acdc_exp.errors import CheckpointError


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
    """A checkpoint file, or a run dir's last.pt."""
    path = layout.find_member(path, "last")
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
        last = layout.member_file(run_dir, "last")
        if resume == "auto":
            return last if last.exists() else None
        if not last.exists():
            raise CheckpointError(f"trainer.resume={resume}: no checkpoint at {last}")
        return last
    return layout.find_member(resume, "last", key="trainer.resume")
