#!/usr/bin/env bash
# Continue the default instrument's training run (models/default/training/) on a GPU machine for
# a fixed time, and leave everything to bring back in OUT_DIR (docs/training.md, "On a GPU").
# Meant for a fresh GPU machine with its own Python + torch + CUDA and no network: it installs
# this working tree like scripts/gpu_check.sh (wheels from --wheels, never downloads), renders the
# teacher dataset (scripts/make_default_dataset.py, the same bytes as on any machine), resumes
# the committed state, trains for --minutes (SIGTERM then checkpoints and exports), and evaluates.
#
#   bash scripts/train_default_gpu.sh OUT_DIR [--minutes 8] [--batch N] [--device cuda]
#        [--precision auto] [--wheels DIR] [--python PY] [--no-install] [--dataset DIR]
#        [--state DIR] [--images N]
#
# --batch N     global batch from now on (the CPU run uses 8; a GPU is idle below a few hundred)
# --dataset DIR an already rendered dataset (default: render one into OUT_DIR/dataset)
# --images N    the run's total images (default: the state's, i.e. the config's)
# --state DIR   the training state to continue (default models/default/training; the CPU test
#               gives a tiny run's)
# OUT_DIR gets run/ (model files + train/checkpoint + train/log.jsonl), eval.json and train.log.
# Back on the development machine:
#   sh scripts/train_default.sh --publish OUT_DIR/run     (then directions, eval, commit)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT=""
PY="python3"
WHEELS="$ROOT/scripts/wheels"
INSTALL=1
MINUTES=8
DEVICE=cuda
PRECISION=auto
DATASET=""
EXTRA=()
STATE="$ROOT/models/default/training"
while [ $# -gt 0 ]; do
  case "$1" in
    --python) PY="$2"; shift 2 ;;
    --wheels) WHEELS="$2"; shift 2 ;;
    --no-install) INSTALL=0; shift ;;
    --minutes) MINUTES="$2"; shift 2 ;;
    --device) DEVICE="$2"; shift 2 ;;
    --precision) PRECISION="$2"; shift 2 ;;
    --dataset) DATASET="$2"; shift 2 ;;
    --batch) EXTRA+=(--batch "$2"); shift 2 ;;
    --images) EXTRA+=(--images "$2"); shift 2 ;;
    --state) STATE="$2"; shift 2 ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    -*) echo "train_default_gpu.sh: unknown option $1" >&2; exit 2 ;;
    *) if [ -n "$OUT" ]; then echo "train_default_gpu.sh: one OUT_DIR only" >&2; exit 2; fi
       OUT="$1"; shift ;;
  esac
done
if [ -z "$OUT" ]; then
  echo "usage: bash scripts/train_default_gpu.sh OUT_DIR [options] (--help)" >&2; exit 2
fi
[ -f "$STATE/state.json" ] || { echo "train_default_gpu.sh: no training state in $STATE" >&2; exit 2; }
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
START=$(date +%s)
if [ "$INSTALL" = 1 ]; then
  . "$ROOT/scripts/gpu_install.sh"
  gpu_install train_default_gpu.sh   # sets PY to the installed venv's python
fi

if [ -z "$DATASET" ]; then
  DATASET="$OUT/dataset"
  [ -f "$DATASET/dataset.json" ] || "$PY" "$ROOT/scripts/make_default_dataset.py" \
    --out "$DATASET" --workers "$(nproc)"
  echo "[train_default_gpu.sh] dataset ready at $(( $(date +%s) - START )) s"
fi
RUN="$OUT/run"
if [ ! -f "$RUN/train/checkpoint/state.json" ]; then
  mkdir -p "$RUN/train"
  cp -r "$STATE" "$RUN/train/checkpoint"
  if [ -f "$RUN/train/checkpoint/log.jsonl" ]; then
    mv "$RUN/train/checkpoint/log.jsonl" "$RUN/train/log.jsonl"
  fi
fi
CLI=(-c "import sys; from ganspace.cli import main; sys.exit(main())")
rc=0
timeout --signal=TERM --kill-after=120 "${MINUTES}m" "$PY" "${CLI[@]}" train "$DATASET" \
  --out "$RUN" --config default --resume --device "$DEVICE" --precision "$PRECISION" \
  --checkpoint-minutes 2 --log-every 50 --no-progress ${EXTRA[@]+"${EXTRA[@]}"} \
  >>"$OUT/train.log" 2>&1 || rc=$?
if [ "$rc" != 0 ] && [ "$rc" != 124 ]; then
  echo "train_default_gpu.sh: training failed ($rc); see $OUT/train.log" >&2; exit "$rc"
fi
"$PY" "${CLI[@]}" eval "$RUN" --count 200 --seed 0 --device "$DEVICE" --json > "$OUT/eval.json"
echo "[train_default_gpu.sh] done in $(( $(date +%s) - START )) s: $RUN, $OUT/eval.json"
