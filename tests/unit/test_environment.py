"""The environment is the locked one, and the lock covers what pyproject.toml asks for."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib

from conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
from check_lock import canonical, locked_versions, mismatches  # noqa: E402

LOCK = REPO / "requirements" / "lock.txt"


def test_this_environment_holds_exactly_the_locked_versions():
    assert mismatches(LOCK) == []
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "check_lock.py")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert f"all {len(locked_versions(LOCK))} locked packages" in proc.stdout


def test_the_lock_pins_every_dependency_of_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + [r for reqs in project["optional-dependencies"].values() for r in reqs]
    names = {canonical(re.match(r"[A-Za-z0-9._-]+", r).group(0)) for r in wanted}
    pins = locked_versions(LOCK)
    assert names - set(pins) == set(), "run `make lock` after changing pyproject.toml"
    # the packages whose versions decide results are pinned to one version each
    for name in ("torch", "torchvision", "onnxruntime", "wandb", "hydra-core", "numpy", "ffcv"):
        assert re.fullmatch(r"\d+(\.\d+)+", pins[name]), (name, pins[name])


def test_a_drifted_package_is_named(tmp_path):
    lock = tmp_path / "lock.txt"
    pins = locked_versions(LOCK)
    lock.write_text(LOCK.read_text().replace(f"numpy=={pins['numpy']}", "numpy==1.0.0"))
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "check_lock.py"), "--lock", str(lock)], capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert f"numpy: locked 1.0.0, installed {pins['numpy']}" in proc.stderr


def test_machine_report_names_the_cpu_and_the_running_versions():
    import torch

    from acdc_exp.machine import ISA_FLAGS, describe, format_report

    info = describe()
    assert set(info["cpu_flags"]) <= set(ISA_FLAGS)
    assert info["versions"]["torch"] == torch.__version__.split("+")[0]
    assert info["python"] == ".".join(map(str, sys.version_info[:3]))
    text = format_report(info)
    assert info["cpu_model"] in text and f"torch {info['versions']['torch']}" in text
