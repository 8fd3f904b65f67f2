"""The documents' own commands, as tests run them.

A fenced block whose info string is ``bash walk=<path>`` (GitHub shows it as plain bash) is a
step of the path named ``<path>``; the steps of one path run in document order, in one bash
session (``set -euo pipefail``), so what a step exports or writes is there for the next one.
A change to the README that breaks the path fails the test that walks it."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Sequence

_FENCE = re.compile(r"^```bash walk=([\w-]+)\s*$")


@dataclass(frozen=True)
class Step:
    doc: str
    line: int  # 1-based line of the opening fence
    path: str
    text: str


def steps(doc: Path, path: str) -> List[Step]:
    """The ``walk=<path>`` blocks of ``doc``, in order."""
    lines = doc.read_text().splitlines()
    found: List[Step] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start = i
        i += 1
        body: List[str] = []
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i])
            i += 1
        if m.group(1) == path:
            found.append(Step(doc.name, start + 1, path, "\n".join(body)))
        i += 1
    return found


def all_paths(doc: Path) -> List[str]:
    return sorted({m.group(1) for line in doc.read_text().splitlines() if (m := _FENCE.match(line))})


def script(walk: Sequence[Step], prelude: str = "") -> str:
    """One bash script: the prelude (the test's stand-ins), then every step, each announced so
    a failure names the document line it came from; ``walk=check`` steps only check."""
    parts = ["set -euo pipefail", prelude]
    for s in walk:
        parts.append(f"echo '>>> {s.doc}:{s.line}' >&2")
        parts.append(with_check_flag(s.text) if s.path == "check" else s.text)
    return "\n".join(parts) + "\n"


def run_walk(
    walk: Sequence[Step], cwd: Path, env: Mapping[str, str], prelude: str = "", timeout: float = 1200
) -> subprocess.CompletedProcess:
    full: Dict[str, str] = {**os.environ, **env}
    return subprocess.run(
        ["bash", "-c", script(walk, prelude)], cwd=cwd, env=full, capture_output=True, text=True, timeout=timeout
    )


def failed_step(proc: subprocess.CompletedProcess) -> str:
    """The last step announced before a failure, and the output's tail."""
    marks = [line for line in proc.stderr.splitlines() if line.startswith(">>> ")]
    where = marks[-1][4:] if marks else "(before the first step)"
    return (
        f"walk failed at {where} (exit {proc.returncode})\n--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"
    )


_CHECKED_COMMANDS = ("acdc-train", "torchrun")


def with_check_flag(text: str) -> str:
    """A ``walk=check`` block as the test runs it: every ``acdc-train`` (or torchrun) command gets
    ``--check``, which composes and validates the run, or every job of a sweep, against its
    launcher preset and launches nothing (commands for GPUs and clusters these machines lack)."""
    logical: List[str] = []
    pending = ""
    for line in text.splitlines():
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    out = []
    for line in logical:
        m = re.match(r"^(.*?)(\s+#.*)?$", line)
        command, comment = m.group(1), m.group(2) or ""
        if command.strip().startswith(_CHECKED_COMMANDS):
            command += " --check"
        out.append(command + comment)
    return "\n".join(out)
