#!/usr/bin/env python3
"""Write a short composition WAV by driving a running ganspacesynth server over OSC.

    ganspacesynth serve --model models/default &
    python scripts/compose_example.py --out composition.wav

Two random latents, eight notes along the slerp path between them (one batch on the server's
device), a little melody, overlapped every half second and mixed to a 16 kHz WAV. All the OSC
work is done by :class:`ganspace_server.client.Client`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np
import soundfile as sf

from ganspace_server.client import Client
from ganspace_server.protocol import DEFAULT_PORT

MELODY = (0, 7, 12, 3, 5, 10, 7, 0)  # semitones above the base pitch
SPACING = 0.5  # seconds between note onsets


def compose(client: Client, seed: int) -> tuple[np.ndarray, int]:
    """Render the piece through ``client``: (mono float32 mix with peak 0.8, sample rate)."""
    status = client.status()
    base = min(max(48, status.min_pitch), status.max_pitch - max(MELODY))
    client.random_z(0, seed)
    client.random_z(1, seed + 1)
    slots = range(2, 2 + len(MELODY))
    for i, slot in enumerate(slots):
        client.slerp_z(slot, 0, 1, i / (len(MELODY) - 1))
    notes = client.synth_batch("note", [(slot, base + m) for slot, m in zip(slots, MELODY,
                                                                             strict=True)])
    sr = client.sample_rate
    hop = round(SPACING * sr)
    mix = np.zeros(hop * (len(notes) - 1) + max(len(n) for n in notes), np.float32)
    for i, note in enumerate(notes):
        peak = float(np.max(np.abs(note))) or 1.0
        mix[i * hop: i * hop + len(note)] += note / peak
    peak = float(np.max(np.abs(mix))) or 1.0
    return mix * (0.8 / peak), sr


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=DEFAULT_PORT)
    ap.add_argument("--out", required=True, help="WAV file to write")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--delivery", choices=("file", "stream"), default="stream",
                    help="stream works across machines; file needs the server's disk")
    args = ap.parse_args(argv)
    with Client(args.host, args.port, delivery=args.delivery, timeout=120.0) as client:
        mix, sr = compose(client, args.seed)
    sf.write(args.out, mix, sr, subtype="PCM_24")
    print(f"wrote {args.out}: {len(mix) / sr:.1f} s at {sr} Hz")
    return 0


if __name__ == "__main__":
    sys.exit(main())
