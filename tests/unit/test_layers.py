"""The package's layers import downward only, in the order FLOORS writes down: a unit imports
units of lower floors only (function-level and type-only imports count too), so a sideways
edge fails as an upward one does; no cycle; nothing outside ``acdc_exp.cli`` imports the CLI."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

import acdc_exp

ROOT = Path(acdc_exp.__file__).parent
# runs in DeepSparse's own venv as a script; it imports no acdc_exp module
STANDALONE = {"deploy/deepsparse_worker.py"}
# The layer contract, top floor first: subpackages and top-level modules (docs/design.md).
FLOORS = (
    ("cli",),  # argument parsing; calls one function, mostly in runs/
    ("runs",),  # a run end to end: train, finish, evaluate, export; a sweep's runs collected
    ("config",),  # composition and prechecks (builds the objects that own each rule)
    ("training", "deploy", "recipe"),  # the loop; ONNX export and inference speed; SparseML recipes -> config
    ("sparsity", "quantization", "loggers"),  # masks; QAT; logs and plots
    ("plan", "models", "data"),  # the schedule; model zoo; loaders
    # a run dir's files; records two layers share; the machine; the config groups' registries
    ("run_layout", "records", "machine", "registries"),
    ("registry",),  # what a registry is: variants found by _target_
    ("errors",),  # the error types every layer raises
)
FLOOR_OF = {unit: len(FLOORS) - k for k, units in enumerate(FLOORS) for unit in units}


def _unit(parts: tuple[str, ...]) -> str:
    """The subpackage (or top-level module) a dotted acdc_exp name belongs to."""
    return parts[1] if len(parts) > 1 else "(root)"


def import_graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = defaultdict(set)
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if rel.as_posix() in STANDALONE:
            continue
        src = rel.parts[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[tuple[str, ...]] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "acdc_exp":
                if node.module == "acdc_exp":
                    targets = [("acdc_exp", a.name) for a in node.names]
                else:
                    targets = [tuple(node.module.split("."))]
            elif isinstance(node, ast.Import):
                targets = [tuple(a.name.split(".")) for a in node.names if a.name.split(".")[0] == "acdc_exp"]
            for t in targets:
                dst = _unit(t)
                if dst != src:
                    edges[src].add(dst)
    return edges


@pytest.fixture(scope="module")
def edges() -> dict[str, set[str]]:
    """The graph, parsed in a fresh interpreter: CPython 3.11's ``ast`` keeps one recursion
    counter per process, and a thread another test left behind (numba compiling for FFCV)
    can make ``ast.parse`` here fail with "AST constructor recursion depth mismatch"."""
    code = "import json, test_layers; print(json.dumps({k: sorted(v) for k, v in test_layers.import_graph().items()}))"
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parent, capture_output=True, text=True, check=True)
    return {k: set(v) for k, v in json.loads(out.stdout).items()}


def _reaches(edges: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, stack = {start}, [start]
    while stack:
        node = stack.pop()
        if node == goal:
            return True
        for nxt in edges.get(node, ()):
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return False


def test_graph_is_read(edges):
    # known downward edges: the graph is really built from the sources
    assert {"training", "quantization", "deploy"} <= edges["runs"] and "runs" in edges["cli"]


def test_every_unit_has_a_floor(edges):
    units = {p.relative_to(ROOT).parts[0].removesuffix(".py") for p in ROOT.glob("*")} - {"__init__", "__pycache__", "configs"}
    assert sorted(units - set(FLOOR_OF)) == []
    assert sorted(set(FLOOR_OF) - units) == []


def test_imports_go_to_lower_floors_only(edges):
    # sideways (same floor) and upward edges, e.g. loggers -> sparsity before MaskUpdate moved to records
    wrong = sorted((a, b) for a in edges for b in edges[a] if FLOOR_OF.get(b, 0) >= FLOOR_OF.get(a, 0))
    assert wrong == []


def test_no_cycle_between_subpackages(edges):
    cycles = sorted((a, b) for a in edges for b in edges[a] if _reaches(edges, b, a))
    assert cycles == []


def test_nothing_imports_the_cli(edges):
    assert sorted(src for src, dsts in edges.items() if "cli" in dsts) == []


def test_modules_stay_small():
    lines = {p.relative_to(ROOT).as_posix(): len(p.read_text().splitlines()) for p in ROOT.rglob("*.py")}
    assert {name: n for name, n in lines.items() if n > 400} == {}
