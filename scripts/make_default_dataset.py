"""Render the default instrument's training set: the synthetic teacher voices, as a dataset folder.

    python scripts/make_default_dataset.py --out out/default_dataset

writes the dataset folder ``<out>`` (``audio.npy``, ``dataset.json``, ``meta.json`` and the teacher
latents ``latents.npy``): ``--per-pitch`` random voices (``ganspace.train.synthdata``: additive and
2-operator FM, continuous parameters) at every MIDI pitch ``--low``..``--high``. Same arguments,
same bytes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ganspace.train.synthdata import render_dataset


def main() -> None:
    """Parse arguments, render the notes, write the dataset."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="dataset folder to create")
    ap.add_argument("--per-pitch", type=int, default=96, help="random voices per pitch")
    ap.add_argument("--low", type=int, default=36, help="lowest MIDI pitch")
    ap.add_argument("--high", type=int, default=72, help="highest MIDI pitch (inclusive)")
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--workers", type=int, default=2, help="rendering processes")
    args = ap.parse_args()
    ds = render_dataset(args.out, list(range(args.low, args.high + 1)), args.per_pitch, args.seed,
                        workers=args.workers)
    print(f"{len(ds.names)} notes, pitches {ds.pitch_set[0]}..{ds.pitch_set[-1]} -> {args.out}")


if __name__ == "__main__":
    main()
