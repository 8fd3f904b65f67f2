#!/usr/bin/env bash
# Launch (or re-launch: finished runs are skipped) the Fashion-MNIST study as a user would, and
# record the segment's start and end in bench/results/study_fashion_mnist_segments.log, whose
# sum is the study's wall time (bench/study_fashion_mnist.py reads it).
#   bash bench/study_fashion_mnist_launch.sh            # from the repository root, venv set up
# STUDY_CHECKOUT=<dir>: run another checkout of the code (a frozen clone while this one changes).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LOG=$ROOT/bench/results/study_fashion_mnist_segments.log
SRC=${STUDY_CHECKOUT:-$ROOT}
cd "$SRC" || exit 1
export PYTHONPATH=$SRC PATH=$ROOT/.venv/bin:$PATH OMP_NUM_THREADS=1
echo "segment start $(date -u +%FT%TZ) $(git rev-parse --short HEAD) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" >> "$LOG"
bash scripts/slurm_local.sh up
acdc-train -m sweep=fashion_mnist_study hydra/launcher=slurm_local
rc=$?
echo "segment end $(date -u +%FT%TZ) rc=$rc" >> "$LOG"
exit $rc
