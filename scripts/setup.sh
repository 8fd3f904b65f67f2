#!/usr/bin/env bash
# Set up acdc-exp on a fresh Debian/Ubuntu machine: system libraries for FFCV, a virtual
# environment in .venv holding exactly the versions of requirements/lock.txt (FFCV built from
# source) and the project itself.
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

# FFCV 1.0.2 has no wheels: pip builds it against the Debian OpenCV/turbojpeg above (seconds).
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
