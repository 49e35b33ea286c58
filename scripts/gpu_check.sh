#!/usr/bin/env bash
# One-call GPU check: install this working tree beside the machine's own torch, then measure
# (scripts/gpu_check.py) and write OUT_DIR/results.json and OUT_DIR/results.md. Meant for a fresh
# GPU machine with Python 3.12 and torch + CUDA preinstalled and no network: it never downloads.
# The measurements take at most --budget-s (default 400 s); with the install, under 8 minutes.
#
#   bash scripts/gpu_check.sh OUT_DIR [--wheels DIR] [--python PY] [--no-install]
#                             [--device cuda|cuda:N|cpu] [--quick] [--budget-s S] [--fixture DIR]
#
# --python PY   the interpreter that has torch (default: python3)
# --wheels DIR  wheels of the dependencies the machine lacks (default: scripts/wheels); fill it
#               BEFOREHAND on a machine with network, for the GPU machine's Python and platform:
#                 pip download -d scripts/wheels --only-binary=:all: --implementation cp \
#                   --python-version 3.12 --platform manylinux_2_28_x86_64 \
#                   --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#                   -r scripts/gpu_check_requirements.txt
#               (the project's dependencies except torch, and setuptools to build it; packages
#               the machine already has are not installed again, so extra wheels do no harm)
# --no-install  run the measurements with PY as it is (this project already installed there)
# --fixture DIR Magenta's fixture checkpoint for the parity step (default: shared/fixtures/
#               magenta_small in or beside the checkout)
# Other options go to scripts/gpu_check.py (--device, --quick, --budget-s).
#
# The install goes into a temporary virtual environment that sees PY's packages through a .pth
# file (so torch is the machine's own), built from a copy of the working tree (the checkout
# itself is not written to).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT=""
PY="python3"
WHEELS="$ROOT/scripts/wheels"
INSTALL=1
PASS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --python) PY="$2"; shift 2 ;;
    --wheels) WHEELS="$2"; shift 2 ;;
    --no-install) INSTALL=0; shift ;;
    --device|--budget-s|--fixture) PASS+=("$1" "$2"); shift 2 ;;
    --quick) PASS+=("$1"); shift ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    -*) echo "gpu_check.sh: unknown option $1" >&2; exit 2 ;;
    *) if [ -n "$OUT" ]; then echo "gpu_check.sh: one OUT_DIR only" >&2; exit 2; fi
       OUT="$1"; shift ;;
  esac
done
if [ -z "$OUT" ]; then echo "usage: bash scripts/gpu_check.sh OUT_DIR [options] (--help)" >&2; exit 2; fi
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
START=$(date +%s)

"$PY" -c "import torch" 2>/dev/null || {
  echo "gpu_check.sh: $PY cannot import torch (give the interpreter that has it: --python)" >&2
  exit 2
}

if [ "$INSTALL" = 1 ]; then
  . "$ROOT/scripts/gpu_install.sh"
  gpu_install gpu_check.sh   # sets PY to the installed venv's python
fi

FIXTURE=()
for f in "$ROOT/shared/fixtures/magenta_small" "$ROOT/../shared/fixtures/magenta_small"; do
  if [ -f "$f/experiment.json" ]; then FIXTURE=(--fixture "$f"); break; fi
done
"$PY" "$ROOT/scripts/gpu_check.py" "$OUT" ${FIXTURE[@]+"${FIXTURE[@]}"} ${PASS[@]+"${PASS[@]}"}
echo "[gpu_check.sh] done in $(( $(date +%s) - START )) s: $OUT/results.md"
