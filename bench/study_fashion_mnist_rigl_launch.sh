#!/usr/bin/env bash
# RigL's part of the Fashion-MNIST study (docs/study_fashion_mnist.md), as it ran: the sweep's six
# RigL cells as two sweeps side by side, uniform and ERK layers (9 runs each), on Hydra's basic
# launcher with one torch thread each, so the local SLURM cluster's two slots stayed free for
# the test suite. A sweep dir has no timestamp: the same command after an interruption runs only
# what is missing. Records each segment in bench/results/study_fashion_mnist_rigl_segments.log.
#   bash bench/study_fashion_mnist_rigl_launch.sh uniform & bash bench/study_fashion_mnist_rigl_launch.sh erk
# STUDY_CHECKOUT=<dir>: run another checkout of the code (a frozen clone while this one changes).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LOG=$ROOT/bench/results/study_fashion_mnist_rigl_segments.log
SRC=${STUDY_CHECKOUT:-$ROOT}
KIND=${1:?uniform or erk}
cd "$SRC" || exit 1
export PYTHONPATH=$SRC PATH=$ROOT/.venv/bin:$PATH OMP_NUM_THREADS=1 WANDB_MODE=offline
echo "segment start $KIND $(date -u +%FT%TZ) $(git rev-parse --short HEAD)" >> "$LOG"
acdc-train -m sweep=fashion_mnist_study "+cell=rigl_${KIND}_90,rigl_${KIND}_95,rigl_${KIND}_98" "sweep_name=study_rigl_${KIND}"
rc=$?
echo "segment end $KIND $(date -u +%FT%TZ) rc=$rc" >> "$LOG"
exit $rc
