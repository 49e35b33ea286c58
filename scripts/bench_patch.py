"""Latency of ganspacesynth.pd: "click synthesize" -> "the sound is in the array", minus generation.

A server runs in this process on 127.0.0.1 (the tiny random model by default, or --model DIR);
real headless Pd runs patches/ganspacesynth.pd plus the test harness (tests/e2e/pd/harness.pd).
Each request: the script sends `/send gss-synth` to the harness (which bangs the patch's synthesize
button), the patch sends /synth to the server, the server generates, delivers (file: a float WAV and
/buffer.file; stream: acked /buffer.chunk messages), the patch loads the back array ([soundfiler]
read -resize, or [array set] per chunk), swaps the player to it and announces `loaded` on gss-ev,
which the harness forwards to the script. Reported: (receive time of `loaded` - send time of the
click) - generation time the server's worker measured for that job, p50 / p95 in ms.

    python scripts/bench_patch.py [--requests 50] [--modes file stream] [--model DIR]
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
    ap.add_argument("--requests", type=int, default=50, help="timed requests per mode")
    ap.add_argument("--modes", nargs="+", default=["file", "stream"], choices=("file", "stream"))
    ap.add_argument("--model", default="tiny", help="model folder, or 'tiny' (default)")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    args = ap.parse_args(argv)

    from ganspace.engine.model import random_model
    from ganspace.formats import load_model
    from ganspace_server.config import ServerConfig
    from ganspace_server.server import Server

    device = None if args.device == "auto" else args.device
    model = (random_model("tiny", device=device) if args.model == "tiny" else
              load_model(args.model, device=device))
    sys.setswitchinterval(0.001)
    patch = ROOT / "patches" / "ganspacesynth.pd"
    with tempfile.TemporaryDirectory() as cache, \
            Server(model, ServerConfig(port=0, cache_dir=Path(cache)), args.model) as server:
        port = server.address[1]
        with PdSession([patch], sends=[f"gss-cfg {free_udp_port()} {port}"],
                       watch=["gss-ev", "gss-in"]) as pd:
            pd.wait_watch("gss-ev", lambda a: a[0] == "status", timeout=30)
            print(f"Pd {pd.cmd[0]}; server {server.address[0]}:{port}; model {args.model} on "
                  f"{model.device}; {args.requests} requests per mode (+3 warm-up)")
            print("mode    overhead p50  overhead p95  generate p50  total p50  (ms)")
            for mode in args.modes:
                m = pd.mark()
                pd.to("gss-stream", 1 if mode == "stream" else 0)
                pd.wait_watch("gss-in", lambda a, mode=mode: a[:3] == ("done", "/delivery", mode),
                              since=m, timeout=10)
                over, gen, total = [], [], []
                for i in range(args.requests + 3):
                    last = server.timings[-1] if server.timings else None
                    m = pd.mark()
                    t0 = pd.to("gss-synth")
                    t1, ev = pd.wait_watch_t("gss-ev", lambda a: a[0] == "loaded", since=m,
                                             timeout=120)
                    deadline = time.monotonic() + 10
                    while (not server.timings or server.timings[-1] is last) and \
                            time.monotonic() < deadline:
                        time.sleep(0.0005)
                    g = server.timings[-1].generate
                    if int(ev[3]) != model.audio_length:
                        raise RuntimeError(f"loaded {ev}")
                    if i >= 3:
                        over.append(1e3 * (t1 - t0 - g))
                        gen.append(1e3 * g)
                        total.append(1e3 * (t1 - t0))
                    pd.to("gss-snd-stop")
                print(f"{mode:<7} {statistics.median(over):12.2f} "
                      f"{float(np.percentile(over, 95)):13.2f} {statistics.median(gen):13.2f} "
                      f"{statistics.median(total):10.2f}   n={len(over)}")
            errors = pd.errors()
            if errors:
                print("Pd errors:\n" + "\n".join(errors), file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
