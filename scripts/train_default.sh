#!/bin/sh
# Train the default instrument (models/default) on a CPU, in the background-friendly way the
# shipped model was made: one thread, checkpoint every 5 minutes, log to out/train_default/log.
# Interrupt with SIGTERM/SIGINT: the run checkpoints and exports before it exits; continue it
# with `sh scripts/train_default.sh --resume`.
set -e
cd "$(dirname "$0")/.."
[ -d out/default_dataset ] || python scripts/make_default_dataset.py --out out/default_dataset
mkdir -p out/train_default
exec ganspacesynth train out/default_dataset --out out/train_default/run --config small \
    --threads 1 --checkpoint-minutes 5 --log-every 10 --no-progress "$@" \
    >>out/train_default/log 2>&1
