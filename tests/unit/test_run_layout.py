"""A run dir's layout is defined once (acdc_exp/run_layout.py): how a ``checkpoint=`` value
becomes a member's file, and no other module spells a member file or the checkpoints folder."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import acdc_exp
from acdc_exp import run_layout as layout
from acdc_exp.errors import CheckpointError
from acdc_exp.training.checkpoint import resolve_resume

ROOT = Path(acdc_exp.__file__).parent
# "checkpoints" that are not a run dir's folder: torch hub's cache, a summary.json key
OTHER_CHECKPOINTS = {"models/factory.py", "loggers/wandb_logger.py"}


def test_a_run_dir_or_a_file_becomes_the_members_file(tmp_path):
    run = tmp_path / "run"
    layout.checkpoints_dir(run).mkdir(parents=True)
    for member in ("final", "dense"):
        layout.member_file(run, member).write_bytes(b"x")
    assert layout.find_member(run, "dense") == run / "checkpoints" / "dense.pt"
    assert layout.find_member(run / "checkpoints" / "final.pt", "dense") == run / "checkpoints" / "final.pt"
    assert layout.run_dir_of(run / "checkpoints" / "final.pt") == run
    loose = tmp_path / "loose"  # a folder of .pt files without checkpoints/
    loose.mkdir()
    (loose / "last.pt").write_bytes(b"x")
    assert layout.find_member(loose, "last") == loose / "last.pt"
    assert layout.run_dir_of(loose / "last.pt") == loose


def test_a_missing_run_or_member_is_one_line_naming_it(tmp_path):
    with pytest.raises(CheckpointError, match=r"^trainer.resume='/nope' does not exist \(give a run dir or a .pt file\)$"):
        layout.find_member("/nope", "last", key="trainer.resume")
    with pytest.raises(CheckpointError, match=r"no int8 member \(looked for checkpoints/final_int8.pt and final_int8.pt\)$"):
        layout.find_member(tmp_path, "int8")


def test_resume_takes_a_file_a_run_dir_or_a_folder_of_pt_files(tmp_path):
    run, loose, here = tmp_path / "run", tmp_path / "loose", tmp_path / "here"
    layout.checkpoints_dir(run).mkdir(parents=True)
    layout.member_file(run, "last").write_bytes(b"x")
    loose.mkdir()
    (loose / "last.pt").write_bytes(b"x")
    assert resolve_resume(str(run), here) == run / "checkpoints" / "last.pt"
    assert resolve_resume(str(run / "checkpoints" / "last.pt"), here) == run / "checkpoints" / "last.pt"
    assert resolve_resume(str(loose), here) == loose / "last.pt"
    assert resolve_resume("auto", here) is None and resolve_resume("never", run) is None
    assert resolve_resume("auto", run) == run / "checkpoints" / "last.pt"
    with pytest.raises(CheckpointError, match=r"^trainer.resume='.*/gone' does not exist \(give a run dir or a .pt file\)$"):
        resolve_resume(str(tmp_path / "gone"), here)


def test_no_other_module_spells_the_layout():
    names = set(layout.MEMBER_FILES.values()) | {layout.SUMMARY, layout.CHECKPOINTS, layout.TRAINING_CURVE}
    found = []
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT).as_posix()
        if rel == "run_layout.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in names:
                if not (node.value == layout.CHECKPOINTS and rel in OTHER_CHECKPOINTS):
                    found.append(f"{rel}:{node.lineno} {node.value!r}")
    assert found == []
