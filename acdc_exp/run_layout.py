"""A run directory's layout, in one place: where a run keeps its checkpoints, members, summary,
plots and exports, and how a ``checkpoint=`` value (a run dir or a .pt file) becomes a file.

    <run_dir>/checkpoints/{last,dense,final,final_int8}.pt   summary.json   training_curve.png
    <run_dir>/plots/   <run_dir>/export/
"""

from __future__ import annotations

import os
from pathlib import Path

from acdc_exp.errors import CheckpointError

CHECKPOINTS = "checkpoints"
LAST = "last.pt"
# the files of a run's members, under <run_dir>/checkpoints/ ("last" is the resume point)
MEMBER_FILES = {"final": "final.pt", "dense": "dense.pt", "int8": "final_int8.pt", "last": LAST}
SUMMARY = "summary.json"
TRAINING_CURVE = "training_curve.png"
PLOTS = "plots"
EXPORT = "export"


def checkpoints_dir(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / CHECKPOINTS


def member_file(run_dir: str | os.PathLike, member: str) -> Path:
    """Where a run writes ``member`` (one of MEMBER_FILES)."""
    return checkpoints_dir(run_dir) / MEMBER_FILES[member]


def run_dir_of(checkpoint_file: str | os.PathLike) -> Path:
    """The run dir a checkpoint file belongs to (its folder, or the one above ``checkpoints/``)."""
    parent = Path(checkpoint_file).parent
    return parent.parent if parent.name == CHECKPOINTS else parent


def find_member(checkpoint: str | os.PathLike, member: str, key: str = "checkpoint") -> Path:
    """The file a ``key=checkpoint`` value names: the file itself, or a run dir's ``member``
    (under ``checkpoints/``, or beside it for a folder of loose .pt files)."""
    path = Path(checkpoint)
    if path.is_file():
        return path
    if not path.exists():
        raise CheckpointError(f"{key}={str(checkpoint)!r} does not exist (give a run dir or a .pt file)")
    name = MEMBER_FILES[member]
    for candidate in (path / CHECKPOINTS / name, path / name):
        if candidate.is_file():
            return candidate
    raise CheckpointError(f"{key}={str(checkpoint)!r} has no {member} member (looked for {CHECKPOINTS}/{name} and {name})")
