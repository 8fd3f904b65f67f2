"""A plain (non-editable) install: the wheel carries the Hydra configs as package data, and its
``acdc-train`` runs the demo from an empty directory with no checkout and no ACDC_CONFIG_DIR.

The wheel is built offline from a copy of the sources (an in-tree build would write build/ and
*.egg-info into the checkout), then installed into a venv of its own; that venv borrows this
venv's dependencies through a .pth line, which adds their directory to sys.path without running
the .pth files in it, so this venv's editable acdc_exp is not picked up."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from conftest import REPO

# what the build reads: pyproject.toml names README.md; configs/sweep links to ../sweeps
SOURCES = ("pyproject.toml", "README.md", "acdc_exp", "configs", "sweeps")


def config_files() -> set[str]:
    """Every YAML of the repository's configs/, links followed (sweep/ is one)."""
    root = REPO / "configs"
    return {
        (Path(d) / f).relative_to(root).as_posix()
        for d, _, files in os.walk(root, followlinks=True)
        for f in files
        if f.endswith(".yaml")
    }


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / name, src / name)
    cmd = [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "--no-index", "-q"]
    proc = subprocess.run(cmd + ["-w", str(tmp / "dist")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (whl,) = (tmp / "dist").glob("acdc_exp-*.whl")
    return whl


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    # this venv's pip, run inside the new one: it installs there, scripts included
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)]
    proc = subprocess.run(install, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # only after the install, so pip never sees (or touches) this venv's editable acdc-exp
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(site) / "project_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def clean_env(tmp: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("ACDC_CONFIG_DIR", "PYTHONPATH", "VIRTUAL_ENV")}
    env.update(ACDC_RUNS_ROOT=str(tmp / "runs"), ACDC_DATA_CACHE=str(tmp / "cache"), OMP_NUM_THREADS="1", WANDB_MODE="offline")
    return env


def test_the_wheel_holds_every_config_as_a_file(wheel):
    with zipfile.ZipFile(wheel) as zf:
        infos = [i for i in zf.infolist() if i.filename.startswith("acdc_exp/configs/")]
    packed = {i.filename.removeprefix("acdc_exp/configs/") for i in infos}
    assert packed == config_files()
    assert {"sweep/sparsity.yaml", "sweep/seeds.yaml"} <= packed  # through the configs/sweep link
    # regular files, not links (a link's zip entry has the S_IFLNK bits in external_attr)
    assert all((i.external_attr >> 16) & 0o170000 in (0, 0o100000) for i in infos)


def test_the_installed_wheel_imports_from_its_own_venv(venv):
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import acdc_exp.config.compose as c; print(c.__file__); print(c.config_dir())"],
        capture_output=True,
        text=True,
        check=True,
        cwd=venv,
        env=clean_env(venv.parent),
    ).stdout.split()
    site = str(venv.resolve())
    assert out[0].startswith(site), out  # not the checkout's acdc_exp
    assert out[1].startswith(site) and Path(out[1], "train.yaml").is_file(), out


def test_acdc_train_of_the_wheel_runs_the_demo_from_an_empty_directory(venv, tmp_path):
    cwd = tmp_path / "empty"
    cwd.mkdir()
    # the command: one epoch of the demo (its schedule scales with trainer.epochs)
    fast = ["trainer.epochs=1", "trainer.progress=false", "trainer.num_threads=1"]
    proc = subprocess.run(
        [str(venv / "bin" / "acdc-train"), *fast], cwd=cwd, env=clean_env(tmp_path), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (summary,) = (tmp_path / "runs").rglob("summary.json")
    result = json.loads(summary.read_text())
    assert result["experiment"] == "digits_acdc" and result["epochs"] == 1
    assert abs(result["sparsity_pruned_layers"] - 0.9) < 0.005  # every phase ran, in one epoch
    assert str(tmp_path / "runs") in proc.stdout  # the summary line names the run dir
    assert list(cwd.iterdir()) == []  # everything went to ACDC_RUNS_ROOT
