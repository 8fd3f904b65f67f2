#!/usr/bin/env bash
# Set up acdc-exp: system libraries for FFCV, a virtual environment in .venv holding exactly the
# versions of requirements/lock.txt (FFCV built from source) and the project itself.
# Prerequisites are checked first, before anything is installed; each missing one is a line
# saying what is missing and how to get it. As root (or with passwordless sudo) on Debian/Ubuntu
# the missing system packages are installed with apt; otherwise apt is never called and the
# pieces FFCV's build needs must be there already (an admin's packages, or conda's).
# Idempotent: a second run checks and skips what is already there.
#   scripts/setup.sh            # what the demo needs
#   scripts/setup.sh --test     # plus test tools and the local SLURM cluster packages
#   scripts/setup.sh --check    # only check the prerequisites (with --test: SLURM's too); installs nothing
#   PYTHON=/path/to/python3.11 scripts/setup.sh   # the interpreter of a new .venv (default python3)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${ACDC_VENV:-$ROOT/.venv}
WITH_TEST=0
CHECK_ONLY=0
for arg in "$@"; do
  case "$arg" in
    --test) WITH_TEST=1 ;;
    --check) CHECK_ONLY=1 ;;
    *) echo "setup: unknown option '$arg'; allowed: --test, --check" >&2; exit 2 ;;
  esac
done
WANT=3.11  # requirements/lock.txt is resolved for CPython 3.11 (make lock)
GET_PY="apt-get install python$WANT python$WANT-venv python$WANT-dev (without root: conda create -p ~/py$WANT python=$WANT, or uv python install $WANT), then PYTHON=/path/to/python$WANT make demo"
CONDA="conda install -c conda-forge opencv libjpeg-turbo pkg-config compilers (then run set-up with that environment active)"

log() { printf '[setup] %s\n' "$*"; }
PROBLEMS=()
problem() { PROBLEMS+=("$*"); }

# --- who installs system packages: apt as root or through passwordless sudo, else nobody -----
SUDO=""
CAN_APT=0
if command -v apt-get >/dev/null 2>&1 && command -v dpkg >/dev/null 2>&1; then
  if [[ $(id -u) -eq 0 ]]; then
    CAN_APT=1
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    CAN_APT=1
    SUDO="sudo -n"
  fi
fi
APT_WANTED=()
want_deb() { APT_WANTED+=("$@"); }

# --- the interpreter: PYTHON, else the existing venv's, else python3 --------------------------
if [[ -n "${PYTHON:-}" ]]; then
  PY=$PYTHON
  PY_SRC="PYTHON=$PYTHON"
elif [[ -x "$VENV/bin/python" ]]; then
  PY=$VENV/bin/python
  PY_SRC="the existing $VENV"
else
  PY=python3
  PY_SRC="python3, the default"
fi
PY_OK=0
if ! command -v "$PY" >/dev/null 2>&1; then
  problem "Python interpreter '$PY' not found or not executable ($PY_SRC): $GET_PY"
elif ! PY_VERSION=$("$PY" --version 2>&1 | sed -n 's/^Python \([0-9][0-9.]*\).*/\1/p' | head -n1) || [[ -z "$PY_VERSION" ]]; then
  problem "'$PY' ($PY_SRC) does not answer --version like Python: $GET_PY"
elif [[ "$PY_VERSION" != "$WANT" && "$PY_VERSION" != "$WANT".* ]]; then
  if [[ "$PY" == "$VENV/bin/python" ]]; then
    problem "Python $WANT needed (requirements/lock.txt is resolved for CPython $WANT), found $PY_VERSION in $VENV (an older set-up): rm -rf $VENV, then PYTHON=/path/to/python$WANT make demo"
  else
    problem "Python $WANT needed (requirements/lock.txt is resolved for CPython $WANT), found $PY_VERSION at $(command -v "$PY") ($PY_SRC): $GET_PY"
  fi
else
  # implementation, path, headers, the compilers distutils uses (CC/CXX override them), venv
  mapfile -t INFO < <("$PY" -c '
import importlib.util as u, platform, sys, sysconfig
cv = lambda k, default: (sysconfig.get_config_var(k) or default).split()[0]
print(platform.python_implementation(), sys.executable, sysconfig.get_paths()["include"], cv("CC", "cc"), cv("CXX", "c++"), sep="\n")
print(int(bool(u.find_spec("venv") and u.find_spec("ensurepip.__main__"))))' 2>/dev/null || true)
  if ((${#INFO[@]} != 6)); then
    problem "'$PY' ($PY_SRC) reports version $PY_VERSION but cannot run a standard-library query: $GET_PY"
  elif [[ "${INFO[0]}" != CPython ]]; then
    problem "CPython $WANT needed (the locked wheels are CPython's), found ${INFO[0]} $PY_VERSION at ${INFO[1]}: $GET_PY"
  else
    PY_OK=1
    PY_EXE=${INFO[1]} PY_INC=${INFO[2]} PY_CC=${INFO[3]} PY_CXX=${INFO[4]} PY_VENV=${INFO[5]}
  fi
  if ((PY_OK)) && [[ "$PY" != "$VENV/bin/python" && -x "$VENV/bin/python" ]]; then
    have=$("$VENV/bin/python" --version 2>&1 | sed -n 's/^Python \([0-9]*\.[0-9]*\).*/\1/p')
    [[ "$have" == "$WANT" ]] ||
      problem "$VENV holds Python ${have:-unknown}, not $PY_VERSION ($PY_SRC): rm -rf $VENV to rebuild it with that interpreter"
  fi
fi

# the Debian package of a system interpreter (/usr/bin/python3.11 -> python3.11): its -venv and
# -dev packages supply what that interpreter lacks
debian_python() {
  ((CAN_APT)) || return 1
  local owner
  owner=$(dpkg -S "$(readlink -f "$PY_EXE")" 2>/dev/null | cut -d: -f1) || return 1
  [[ "$owner" =~ ^python3\.[0-9]+(-minimal)?$ ]] && echo "${owner%-minimal}"
}

# FFCV 1.0.2 has no wheels: its C++ extension is built against OpenCV and libjpeg-turbo, found
# with `pkg-config opencv4` / `pkg-config libturbojpeg`. Once built (ffcv installed in the venv)
# only its shared libraries are needed, so a finished no-root set-up does not ask again.
NEED_BUILD=1
if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c 'import importlib.metadata as m; m.version("ffcv")' >/dev/null 2>&1; then
  NEED_BUILD=0
fi

pc_found() {  # a pkg-config module; without pkg-config, look for its .pc file where it would
  if command -v pkg-config >/dev/null 2>&1; then
    pkg-config --exists "$1"
  else
    local d dirs=${PKG_CONFIG_LIBDIR:-/usr/lib/*/pkgconfig /usr/lib/pkgconfig /usr/share/pkgconfig /usr/local/lib/pkgconfig}
    for d in ${PKG_CONFIG_PATH:+${PKG_CONFIG_PATH//:/ }} ${dirs//:/ }; do
      [[ -f "$d/$1.pc" ]] && return 0
    done
    return 1
  fi
}

if ((CAN_APT)); then
  want_deb libopencv-dev libturbojpeg0-dev pkg-config build-essential
  ((WITH_TEST)) && want_deb slurmctld slurmd slurm-client munge
elif [[ ! -d ${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist} ]]; then
  # optional: only data=fashion_mnist needs it, and it can read the files from elsewhere
  log "note: Fashion-MNIST is not installed (Debian package dataset-fashion-mnist); data=fashion_mnist then needs FASHION_MNIST_DIR or data.source_dir=<folder with its IDX files>"
fi
if ((PY_OK)); then
  deb_py=$(debian_python || true)
  if [[ ! -x "$VENV/bin/python" && "$PY_VENV" != 1 ]]; then
    if [[ -n "$deb_py" ]]; then
      want_deb "$deb_py-venv"
    else
      problem "$PY_EXE cannot create virtual environments (no venv/ensurepip): for Debian's python$WANT ask an admin for the package python$WANT-venv, or set PYTHON= to a Python $WANT that has it (conda, uv python install $WANT, pyenv)"
    fi
  fi
  if ((NEED_BUILD)) && [[ ! -f "$PY_INC/Python.h" ]]; then
    if [[ -n "$deb_py" ]]; then
      want_deb "$deb_py-dev"
    else
      problem "Python headers missing (no Python.h in $PY_INC), FFCV's build needs them: for Debian's python$WANT ask an admin for the package python$WANT-dev, or set PYTHON= to a Python $WANT that ships them (conda, uv python install $WANT, pyenv)"
    fi
  fi
fi
if ((!CAN_APT)); then
  # no apt: every piece must be present already; one line per missing piece
  if ((NEED_BUILD)); then
    command -v pkg-config >/dev/null 2>&1 ||
      problem "pkg-config not found, FFCV's build finds OpenCV and libjpeg-turbo with it: ask an admin for the Debian package pkg-config, or $CONDA"
    pc_found opencv4 ||
      problem "OpenCV 4 development files not found by pkg-config (opencv4.pc), FFCV's build needs them: ask an admin for the Debian package libopencv-dev, or $CONDA"
    pc_found libturbojpeg ||
      problem "libjpeg-turbo development files not found by pkg-config (libturbojpeg.pc), FFCV's build needs them: ask an admin for the Debian package libturbojpeg0-dev, or $CONDA"
    if ((PY_OK)); then
      cc=${CC:-$PY_CC}
      cxx=${CXX:-$PY_CXX}
      command -v "${cc%% *}" >/dev/null 2>&1 ||
        problem "C compiler '${cc%% *}' not found (CC, else Python's build setting), FFCV's build needs it: ask an admin for the Debian package build-essential, or $CONDA"
      command -v "${cxx%% *}" >/dev/null 2>&1 ||
        problem "C++ compiler '${cxx%% *}' not found (CXX, else Python's build setting), FFCV's build needs it: ask an admin for the Debian package build-essential, or $CONDA"
    fi
  fi
  if ((WITH_TEST)); then
    for pair in slurmctld:slurmctld slurmd:slurmd sinfo:slurm-client munged:munge; do
      command -v "${pair%%:*}" >/dev/null 2>&1 ||
        problem "${pair%%:*} not found, the local SLURM cluster of --test needs it: ask an admin for the Debian package ${pair#*:}"
    done
  fi
fi

APT_MISSING=()
for pkg in "${APT_WANTED[@]}"; do dpkg -s "$pkg" >/dev/null 2>&1 || APT_MISSING+=("$pkg"); done

if ((${#PROBLEMS[@]})); then
  for p in "${PROBLEMS[@]}"; do echo "setup: $p" >&2; done
  hint=""
  ((CAN_APT)) || hint=" (not root and no passwordless sudo, so apt was not used; with sudo rights run 'sudo -v' first)"
  echo "setup: ${#PROBLEMS[@]} prerequisite(s) missing, nothing installed$hint" >&2
  exit 1
fi
if ((CHECK_ONLY)); then
  mode=$([[ $CAN_APT == 1 ]] && echo "system packages through apt" || echo "no root: the system pieces are present")
  log "prerequisites OK (Python $PY_VERSION at $PY_EXE; $mode)${APT_MISSING[*]:+; set-up would apt-get install ${APT_MISSING[*]}}"
  exit 0
fi

# --- install: nothing above changed the machine ------------------------------------------------
if ((${#APT_MISSING[@]})); then
  log "apt-get install ${APT_MISSING[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${APT_MISSING[@]}" >/dev/null
fi
# the built-in data=fashion_mnist (Debian's dataset-fashion-mnist, four IDX files, ~30 MB):
# optional, so a distribution without the package still sets up
if ((CAN_APT)) && ! dpkg -s dataset-fashion-mnist >/dev/null 2>&1; then
  log "apt-get install dataset-fashion-mnist"
  ( ((${#APT_MISSING[@]})) || $SUDO apt-get update -qq ) &&
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null ||
    log "note: dataset-fashion-mnist not installed (not in this distribution's archive?); data=fashion_mnist then needs data.source_dir="
fi

if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating virtual environment $VENV (Python $PY_VERSION, $PY_EXE)"
  "$PY" -m venv "$VENV"
  # pip and wheel pinned too (setuptools comes from the lock): the installer is part of the set-up
  "$VENV/bin/pip" install -q "pip==26.3" "wheel==0.48.0"
fi
PIP="$VENV/bin/pip"
VPY="$VENV/bin/python"

# Every package at the exact version of requirements/lock.txt (refresh: `make lock`). torch and
# torchvision come in the same install: a CPU-only torch wheel next to PyPI's torchvision
# fails with 'operator torchvision::nms does not exist'.
LOCK=requirements/lock.txt
STAMP="$VENV/.acdc-setup-$(cat pyproject.toml scripts/setup.sh "$LOCK" | sha1sum | cut -c1-12)-$WITH_TEST"
if [[ -f "$STAMP" ]] && "$VPY" -c "import acdc_exp, ffcv" >/dev/null 2>&1; then
  log "environment up to date ($VENV)"
  "$VPY" scripts/check_lock.py --report
  exit 0
fi

# FFCV 1.0.2 has no wheels: pip builds it against the OpenCV/turbojpeg checked above (seconds).
# Its compiled module links to those libraries, so they must stay installed afterwards.
log "installing the locked packages ($(grep -c '==' "$LOCK") of them; torch alone is about 5 GB)"
"$PIP" install -q -r "$LOCK"
# the project itself: its dependencies are all in the lock already
log "installing acdc-exp (editable)"
"$PIP" install -q --no-deps -e .
"$PIP" check
"$VPY" -c "import acdc_exp, ffcv, torch, torchvision, hydra, wandb"
"$VPY" scripts/check_lock.py --report
rm -f "$VENV"/.acdc-setup-*
touch "$STAMP"
log "done: $VENV"
