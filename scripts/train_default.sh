#!/bin/sh
# Train the default instrument (models/default) on a CPU: the "default" config (regression onto
# the synthetic teacher, docs/training.md), checkpoints every 5 minutes, log in
# out/train_default/log. SIGTERM/SIGINT checkpoints and exports before exiting.
#
#   sh scripts/train_default.sh [--threads N] [more ganspacesynth train flags]
#       renders the dataset if needed, then continues the committed run: the training state in
#       models/default/training/ (weights, EMA, optimizer, counters; the data order and noise
#       follow from the step count) is copied into out/train_default/run and resumed, unless
#       that run is already as far; without a committed state a new run starts.
#   sh scripts/train_default.sh --publish [RUN]
#       copies the latest checkpoint of RUN (default out/train_default/run; a GPU run brought
#       back from scripts/train_default_gpu.sh: OUT_DIR/run) to models/default/training/ and its
#       exported model to models/default/ (then recompute the directions and commit;
#       docs/training.md).
#   sh scripts/train_default.sh --publish-state [RUN]
#       the training state only: the shipped model stays until the run beats it.
set -e
cd "$(dirname "$0")/.."
run=out/train_default/run
state=models/default/training
if [ "$1" = "--publish" ] || [ "$1" = "--publish-state" ]; then
    [ -n "$2" ] && run="$2"
    [ -f "$run/train/checkpoint/state.json" ] || { echo "no checkpoint in $run" >&2; exit 2; }
    rm -rf "$state.tmp" && cp -r "$run/train/checkpoint" "$state.tmp"
    # the log up to the checkpoint (the run may have logged steps after it)
    n=$(grep -o '"images_seen": [0-9]*' "$state.tmp/state.json" | grep -o '[0-9]*$')
    awk -v n="$n" 'match($0, /"images": [0-9]+/) { if (substr($0, RSTART + 10, RLENGTH - 10) + 0 <= n) print }' \
        "$run/train/log.jsonl" > "$state.tmp/log.jsonl"
    rm -rf "$state" && mv "$state.tmp" "$state"
    if [ "$1" = "--publish" ]; then
        cp "$run/model.json" "$run/generator.safetensors" "$run/meta.json" models/default/
    fi
    echo "published $(grep -o '"images_seen": [0-9]*' "$state/state.json") -> $state"
    exit 0
fi
[ -f out/default_dataset/dataset.json ] || \
    python scripts/make_default_dataset.py --out out/default_dataset
mkdir -p out/train_default
images() { grep -o '"images_seen": [0-9]*' "$1/state.json" | grep -o '[0-9]*$'; }
resume=""
if [ -f "$run/train/checkpoint/state.json" ] && { [ ! -f "$state/state.json" ] ||
        [ "$(images "$run/train/checkpoint")" -ge "$(images "$state")" ]; }; then
    resume="--resume"
elif [ -f "$state/state.json" ]; then  # the committed state is newer (or there is no local run)
    rm -rf "$run"
    mkdir -p "$run/train"
    cp -r "$state" "$run/train/checkpoint"
    [ -f "$state/log.jsonl" ] && cp "$state/log.jsonl" "$run/train/log.jsonl"
    rm -f "$run/train/checkpoint/log.jsonl"
    resume="--resume"
fi
exec ganspacesynth train out/default_dataset --out "$run" --config default $resume \
    --checkpoint-minutes 5 --log-every 10 --no-progress "$@" >>out/train_default/log 2>&1
