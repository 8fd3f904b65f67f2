"""scripts/setup.sh checks its prerequisites before installing anything: ``--check`` runs only
that stage (it installs nothing), one line per missing piece saying how to get it.

Stand-ins: a shell script that answers ``--version`` like Python 3.10 plays an interpreter this
machine lacks. The no-root case runs the script as the unprivileged user ``nobody`` (runuser),
or as the current user when the suite itself is not root; missing system pieces are real
absences as the FFCV build would meet them (an empty pkg-config search path, a compiler path
that does not exist, a PATH without pkg-config)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

SETUP = REPO / "scripts" / "setup.sh"
WANT = "3.11"


def setup_check(*args: str, env: dict | None = None, user: str | None = None) -> subprocess.CompletedProcess:
    cmd = ["bash", str(SETUP), "--check", *args]
    if user:
        # runuser keeps no environment worth trusting: pass it whole through env(1)
        cmd = ["runuser", "-u", user, "--", "/usr/bin/env", "-i", *[f"{k}={v}" for k, v in (env or {}).items()], *cmd]
        env = None
    else:
        env = {**{k: v for k, v in os.environ.items() if k not in ("PYTHON", "ACDC_VENV")}, **(env or {})}
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)


def problems(proc: subprocess.CompletedProcess) -> list[str]:
    """The per-item lines (the last stderr line is the count)."""
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("setup: ")]
    assert lines and "prerequisite(s) missing, nothing installed" in lines[-1], proc.stderr
    return lines[:-1]


@pytest.fixture
def fake_python(tmp_path) -> tuple[Path, Path]:
    """A Python 3.10 stand-in that logs every way it is called."""
    calls = tmp_path / "calls.log"
    fake = tmp_path / "bin" / "python3"
    fake.parent.mkdir()
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {calls}\n'
        'case "$1" in --version) echo "Python 3.10.12";; *) echo "not a real python" >&2; exit 1;; esac\n'
    )
    fake.chmod(0o755)
    return fake, calls


def test_this_environment_passes(tmp_path):
    # the project's own venv and interpreter, as `make demo` finds them
    proc = setup_check(env={"ACDC_VENV": sys.prefix})
    assert proc.returncode == 0, proc.stderr
    assert f"prerequisites OK (Python {WANT}." in proc.stdout


def test_a_fresh_venv_with_this_interpreter_passes_and_nothing_is_created(tmp_path):
    venv = tmp_path / "venv"
    proc = setup_check(env={"ACDC_VENV": str(venv), "PYTHON": sys.executable})
    if proc.returncode != 0 and os.geteuid() != 0:
        pytest.skip(f"this machine lacks build pieces for a new venv: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    assert not venv.exists()


def test_python_3_10_is_refused_with_how_to_get_3_11(tmp_path, fake_python):
    fake, calls = fake_python
    proc = setup_check(env={"ACDC_VENV": str(tmp_path / "venv"), "PYTHON": str(fake)})
    assert proc.returncode == 1
    (line,) = problems(proc)
    assert f"Python {WANT} needed" in line and f"found 3.10.12 at {fake}" in line
    assert f"apt-get install python{WANT} python{WANT}-venv python{WANT}-dev" in line
    assert f"PYTHON=/path/to/python{WANT} make demo" in line
    # asked its version and nothing else: no venv was attempted with it
    assert calls.read_text().splitlines() == ["--version"]
    assert not (tmp_path / "venv").exists()


def test_a_missing_interpreter_is_named(tmp_path):
    absent = tmp_path / "nowhere" / f"python{WANT}"
    proc = setup_check(env={"ACDC_VENV": str(tmp_path / "venv"), "PYTHON": str(absent)})
    assert proc.returncode == 1
    (line,) = problems(proc)
    assert f"Python interpreter '{absent}' not found" in line and f"PYTHON={absent}" in line


def test_a_venv_of_an_older_python_is_named_with_the_way_out(tmp_path, fake_python):
    fake, _ = fake_python
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(fake)
    proc = setup_check(env={"ACDC_VENV": str(venv)})
    assert proc.returncode == 1
    (line,) = problems(proc)
    assert f"found 3.10.12 in {venv}" in line and f"rm -rf {venv}" in line


def test_an_unknown_option_is_one_line():
    proc = subprocess.run(["bash", str(SETUP), "--chek"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "setup: unknown option '--chek'; allowed: --test, --check"


def _unprivileged() -> tuple[str | None, str]:
    """(user to run as or None for this one, a Python 3.11 that user can execute); skips when
    neither is possible or the user could use apt after all (passwordless sudo)."""
    if os.geteuid() != 0:
        if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
            pytest.skip("this user has passwordless sudo: set-up would use apt")
        return None, sys.executable
    if not shutil.which("runuser"):
        pytest.skip("runuser is not available to drop root")
    # /root's pyenv interpreters are out of nobody's reach: look for a system one
    for cand in (sys.executable, shutil.which(f"python{WANT}"), f"/usr/bin/python{WANT}", "/usr/bin/python3"):
        if not cand:
            continue
        out = subprocess.run(["runuser", "-u", "nobody", "--", cand, "--version"], capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.startswith(f"Python {WANT}."):
            sudo = subprocess.run(["runuser", "-u", "nobody", "--", "sudo", "-n", "true"], capture_output=True)
            if sudo.returncode == 0:
                pytest.skip("nobody has passwordless sudo here")
            return "nobody", cand
    pytest.skip(f"no Python {WANT} that the user nobody can execute")


def test_without_root_missing_build_pieces_are_named_and_apt_is_not_used(tmp_path):
    user, python = _unprivileged()
    env = {
        "PATH": os.environ["PATH"] if user is None else "/usr/local/bin:/usr/bin:/bin",
        "PYTHON": python,
        "ACDC_VENV": str(tmp_path / "venv"),
        "PKG_CONFIG_LIBDIR": str(tmp_path / "no-pc-files"),  # pkg-config then finds nothing
        "CXX": str(tmp_path / "no-such-c++"),  # distutils links FFCV's C++ with $CXX
    }
    proc = setup_check(env=env, user=user)
    assert proc.returncode == 1, proc.stdout
    lines = problems(proc)
    joined = "\n".join(lines)
    assert "(opencv4.pc)" in joined and "Debian package libopencv-dev" in joined
    assert "(libturbojpeg.pc)" in joined and "Debian package libturbojpeg0-dev" in joined
    assert f"C++ compiler '{tmp_path / 'no-such-c++'}' not found" in joined
    assert all("conda install -c conda-forge opencv libjpeg-turbo pkg-config compilers" in ln for ln in lines)
    assert "not root and no passwordless sudo, so apt was not used" in proc.stderr


def test_without_root_a_machine_with_the_pieces_passes(tmp_path):
    user, python = _unprivileged()
    have = shutil.which("pkg-config") and shutil.which("g++")
    if not have or subprocess.run(["pkg-config", "--exists", "opencv4", "libturbojpeg"]).returncode != 0:
        pytest.skip("this machine lacks FFCV's build pieces")
    env = {
        "PATH": os.environ["PATH"] if user is None else "/usr/local/bin:/usr/bin:/bin",
        "PYTHON": python,
        "ACDC_VENV": str(tmp_path / "venv"),
    }
    proc = setup_check(env=env, user=user)
    assert proc.returncode == 0, proc.stderr
    assert "no root: the system pieces are present" in proc.stdout
