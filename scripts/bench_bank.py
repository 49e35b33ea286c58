"""Keyboard benchmark: bank render time, bank loading into Pd, note-on to sound.

1. Render: what one ``/bank`` job generates (``render_bank``: one timbre at every pitch of the
   model, ``model.batch_size`` notes per forward pass, the model folder's directions applied when
   it has one), median of ``--repeats`` runs after one warm-up, in ms per bank and per note.
2. ``--pd``: real headless Pd runs patches/ganspacesynth_keys.pd against a server in this process
   on the same model. For file and stream delivery: the time from ``/bank.begin`` reaching the
   patch to the patch's ``bank`` event (delivery and loading into the Pd arrays, generation
   excluded). Then note-on to sound: a note-on sent in one OSC bundle with the start of a capture
   of ``keys-out`` (attack 0); the first non-zero sample's index is the delay in samples after
   the DSP block boundary where Pd handled the note-on.

    python scripts/bench_bank.py [--model DIR | --random published] [--device cpu|cuda]
                                 [--precision float32|bfloat16|float16] [--repeats 3] [--pd]

Without --model the shipped default model (models/default) is used.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e" / "pd"))

from pdrunner import PdSession, free_udp_port  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="model folder (default: models/default)")
    ap.add_argument("--random", choices=("published",), default=None,
                    help="a random model with the published dims instead of a folder")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    ap.add_argument("--precision", default="float32", choices=("float32", "bfloat16", "float16"))
    ap.add_argument("--repeats", type=int, default=3, help="timed runs (after one warm-up)")
    ap.add_argument("--pd", action="store_true", help="also time loading into Pd and note-on")
    args = ap.parse_args(argv)

    from ganspace.engine.model import random_model
    from ganspace.errors import GanspaceError
    from ganspace.formats import load_model
    from ganspace.space.directions import load_directions
    from ganspace_server.cli import default_model_dir
    from ganspace_server.handlers.bank import render_bank
    from ganspace_server.handlers.model import folder_directions

    device = None if args.device == "auto" else args.device
    directions = None
    try:
        if args.random:
            model = random_model("published", device=device, precision=args.precision)
            name = "random published"
        else:
            folder = Path(args.model) if args.model else default_model_dir()
            model = load_model(folder, device=device, precision=args.precision)
            name = folder.name
            found = folder_directions(folder)
            directions = load_directions(found) if found is not None else None
    except GanspaceError as exc:
        print(f"bench_bank: {exc}", file=sys.stderr)
        return 2
    coefficients = None if directions is None else np.array([1.0, -0.5], np.float32)
    z = model.random_z(1, seed=0)[0]
    pitches = model.pitches
    times = []
    for i in range(args.repeats + 1):
        t0 = time.perf_counter()
        render_bank(model, z, pitches, directions, coefficients)
        if i:
            times.append(time.perf_counter() - t0)
    ms = 1e3 * statistics.median(times)
    print(f"model {name} on {model.device} ({model.precision}), {len(pitches)} pitches, "
          f"batch {model.batch_size}, directions {'yes' if directions is not None else 'no'}")
    print(f"bank render: {ms:.0f} ms per bank, {ms / len(pitches):.1f} ms per note "
          f"(median of {args.repeats}; runs {', '.join(f'{1e3 * t:.0f}' for t in times)} ms)")
    if args.pd:
        return _pd(model, name, directions, args.repeats)
    return 0


def _pd(model, name: str, directions, repeats: int) -> int:
    """Bank loading into Pd and note-on to sound (see the module docstring)."""
    import soundfile as sf

    from ganspace_server.config import ServerConfig
    from ganspace_server.server import Server

    sys.setswitchinterval(0.001)
    sr = 16000
    with tempfile.TemporaryDirectory() as tmp:
        cfg = ServerConfig(port=0, cache_dir=Path(tmp) / "cache",
                           presets_dir=Path(tmp) / "presets")
        with Server(model, cfg, name, directions) as server:
            sends = [f"keys-cfg {free_udp_port()} {server.address[1]}", "keys-auto 0",
                     "keys-attack 0"]
            with PdSession([ROOT / "patches" / "ganspacesynth_keys.pd"], sends=sends,
                           samplerate=sr, watch=["keys-ev", "keys-in"]) as pd:
                pd.wait_watch("keys-ev", lambda a: a[0] == "bank", timeout=600)
                for mode in ("file", "stream"):
                    pd.to("keys-stream", 1 if mode == "stream" else 0)
                    pd.sync()
                    loads = []
                    for _ in range(repeats):
                        m = pd.mark()
                        pd.to("keys-render")
                        t0, _ = pd.wait_watch_t(
                            "keys-in", lambda a: a[0] == "bank.begin", since=m, timeout=600)
                        t1, _ = pd.wait_watch_t("keys-ev", lambda a: a[0] == "bank", since=m,
                                                timeout=600)
                        loads.append(1e3 * (t1 - t0))
                    print(f"bank into Pd ({mode}): {statistics.median(loads):.0f} ms "
                          f"(bank.begin -> bank ready, median of {repeats})")
                delays = []
                for i in range(repeats):
                    m = pd.mark()
                    pd.bundle(("/capture", "keys-out", sr), ("/send", "keys-note", 60, 127))
                    pd.wait(lambda a, _: a == "/captured", since=m)
                    pd.fast_forward(50)
                    pd.to("keys-note", 60, 0)
                    pd.fast_forward(20)
                    path = Path(tmp) / f"note{i}.wav"
                    pd.write_capture(path)
                    y, _ = sf.read(path, dtype="float32")
                    delays.append(int(np.flatnonzero(y)[0]))
                print(f"note-on to sound: {max(delays)} samples after the DSP block boundary "
                      f"(block 64 samples = {64 / sr * 1e3:.1f} ms at {sr} Hz; runs {delays})")
                if pd.errors():
                    print("Pd errors:\n" + "\n".join(pd.errors()), file=sys.stderr)
                    return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
