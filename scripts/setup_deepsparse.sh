#!/usr/bin/env bash
# Optional: DeepSparse 1.8.0 in its own virtual environment, for the speed report of
# `acdc-export ... benchmark.enabled=true` and bench/bench_onnx.py (they call it as a subprocess).
# DeepSparse is end-of-life (Neural Magic, June 2025) and ships under the Neural Magic DeepSparse
# Community License, not this project's: it grants use "solely for evaluation use in development
# and testing environments, and not for production use". Installing it means accepting that
# licence (.venv-deepsparse/lib/python3.11/site-packages/deepsparse-1.8.0.dist-info/LICENSE).
# ACDC_SKIP_DEEPSPARSE=1 skips it (`make test` then skips the DeepSparse tests).
# It pins numpy 1.26 / onnx 1.14, so it never enters .venv. Idempotent.
#   scripts/setup_deepsparse.sh            # creates .venv-deepsparse
#   DEEPSPARSE_VENV=/path scripts/setup_deepsparse.sh   # elsewhere; then export ACDC_DEEPSPARSE_PYTHON=/path/bin/python
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${DEEPSPARSE_VENV:-$(pwd)/.venv-deepsparse}
PY=${PYTHON:-python3}
LOCK=requirements/deepsparse-lock.txt
log() { printf '[setup-deepsparse] %s\n' "$*"; }

if [[ "${ACDC_SKIP_DEEPSPARSE:-0}" == "1" ]]; then
  log "ACDC_SKIP_DEEPSPARSE=1: skipped"
  exit 0
fi
case "$(uname -m)" in
  x86_64) ;;
  *) log "DeepSparse runs on x86_64 only (this is $(uname -m)): skipped"; exit 0 ;;
esac

STAMP="$VENV/.deepsparse-setup-$(cat "$LOCK" scripts/setup_deepsparse.sh | sha1sum | cut -c1-12)"
if [[ -f "$STAMP" ]] && "$VENV/bin/python" -c "import deepsparse" >/dev/null 2>&1; then
  log "up to date ($VENV)"
  exit 0
fi
if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating virtual environment $VENV"
  $PY -m venv "$VENV"
  "$VENV/bin/pip" install -q "pip==26.3"
fi
log "installing the $(grep -c '==' "$LOCK") packages of $LOCK (about 500 MB)"
log "DeepSparse's licence: evaluation in development and testing only, not production (see this script's header)"
"$VENV/bin/pip" install -q --no-deps -r "$LOCK"
"$VENV/bin/pip" check
NM_DISABLE_ANALYTICS=1 "$VENV/bin/python" -c "
import deepsparse, numpy
from deepsparse import cpu
a = cpu.cpu_architecture()
print(f'[setup-deepsparse] deepsparse {deepsparse.__version__}, numpy {numpy.__version__}; CPU isa {a.isa}, vnni {a.vnni}')"
rm -f "$VENV"/.deepsparse-setup-*
touch "$STAMP"
log "done: $VENV"
