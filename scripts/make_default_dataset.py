"""Render the default instrument's training set: harmonic additive tones, then a dataset folder.

    python scripts/make_default_dataset.py --out out/default_dataset

writes ``<out>_wavs/additive<NN>_<pitch>.wav`` (16 instruments x MIDI 36..72 by default) and the
dataset folder ``<out>`` (``ganspacesynth dataset make``). Same seed, same files.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ganspace.train.dataset import make_dataset
from ganspace.train.synthdata import render_wavs


def main() -> None:
    """Parse arguments, render the notes, build the dataset."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="dataset folder to create")
    ap.add_argument("--instruments", type=int, default=16, help="number of random timbres")
    ap.add_argument("--low", type=int, default=36, help="lowest MIDI pitch")
    ap.add_argument("--high", type=int, default=72, help="highest MIDI pitch (inclusive)")
    ap.add_argument("--seed", type=int, default=2024)
    args = ap.parse_args()
    wavs = args.out.with_name(args.out.name + "_wavs")
    render_wavs(wavs, list(range(args.low, args.high + 1)), args.instruments, args.seed)
    ds = make_dataset(wavs, args.out)
    print(f"{len(ds.names)} notes, pitches {ds.pitch_set[0]}..{ds.pitch_set[-1]} -> {args.out}")


if __name__ == "__main__":
    main()
