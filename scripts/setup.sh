#!/usr/bin/env bash
# Set up acdc-exp on a fresh Debian/Ubuntu machine: system libraries for FFCV, a virtual
# environment in .venv, torch+torchvision, FFCV (built from source) and the project itself.
# Idempotent: a second run checks and skips what is already there.
#   scripts/setup.sh            # what the demo needs
#   scripts/setup.sh --test     # plus test tools and the local SLURM cluster packages
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${ACDC_VENV:-$ROOT/.venv}
PY=${PYTHON:-python3}
WITH_TEST=0
[[ "${1:-}" == "--test" ]] && WITH_TEST=1

log() { printf '[setup] %s\n' "$*"; }

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi

apt_install() {  # install the Debian packages that are missing, with one apt-get update
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  if ((${#missing[@]})); then
    log "apt-get install ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# FFCV 1.0.2 compiles against OpenCV and libjpeg-turbo, found through pkg-config
apt_install libopencv-dev libturbojpeg0-dev pkg-config build-essential
if ((WITH_TEST)); then
  apt_install slurmctld slurmd slurm-client munge
fi

if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating virtual environment $VENV"
  $PY -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip wheel setuptools
fi
PIP="$VENV/bin/pip"
VPY="$VENV/bin/python"

# torch and torchvision from the same index in one go: a CPU-only torch wheel next to
# PyPI's torchvision fails with 'operator torchvision::nms does not exist'
if ! "$VPY" -c "import torch, torchvision" >/dev/null 2>&1; then
  log "installing torch + torchvision (about 2 minutes, 5 GB)"
  "$PIP" install -q torch torchvision
fi

STAMP="$VENV/.acdc-setup-$(sha1sum pyproject.toml scripts/setup.sh | sha1sum | cut -c1-12)-$WITH_TEST"
if [[ -f "$STAMP" ]] && "$VPY" -c "import acdc_exp, ffcv" >/dev/null 2>&1; then
  log "environment up to date ($VENV)"
  exit 0
fi

# FFCV 1.0.2 has no wheels: pip builds it against the Debian OpenCV/turbojpeg above (seconds).
# Its compiled module links to those libraries, so they must stay installed afterwards.
log "installing acdc-exp (editable)"
if ((WITH_TEST)); then
  "$PIP" install -q -e ".[dev]"
else
  "$PIP" install -q -e .
fi
"$VPY" -c "import acdc_exp, ffcv, torch, torchvision, hydra, wandb" 
rm -f "$VENV"/.acdc-setup-*
touch "$STAMP"
log "done: $VENV"
