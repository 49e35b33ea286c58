"""``ganspacesynth bench-server``: what the OSC bridge adds on top of generation, on loopback
(``--soak MINUTES`` is :mod:`ganspace_server.soak`).

A server runs in this process on 127.0.0.1 (its own threads), the Python client sends ``/synth``
for one 4 s note and waits for the buffer. Overhead = the client's request-to-reply time minus the
generation time the server's worker measured for that job. Measured for file delivery (WAV written
and read back) and stream delivery (64000 floats in acked chunks).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ganspace.engine.model import default_pitch, random_model
from ganspace.formats import load_model
from ganspace_server.client import Client
from ganspace_server.config import ServerConfig
from ganspace_server.server import Server


@dataclass(frozen=True)
class ModeReport:
    """Milliseconds for one delivery mode."""

    mode: str
    overhead_p50: float
    overhead_p95: float
    generate_p50: float
    total_p50: float
    requests: int


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def run_bench(model_spec: str, requests: int, device: str | None,
              precision: str = "float32") -> list[ModeReport]:
    """Run ``requests`` timed /synth requests per delivery mode (after 3 warm-ups), the model in
    ``precision`` (``auto`` as ``serve`` runs it)."""
    model = (random_model("tiny", device=device, precision=precision) if model_spec == "tiny"
             else load_model(model_spec, device=device, precision=precision))
    pitch = default_pitch(model.pitches)
    reports = []
    with tempfile.TemporaryDirectory() as cache:
        config = ServerConfig(port=0, cache_dir=Path(cache))
        with Server(model, config, model_spec) as server, \
                Client(*server.address, timeout=120.0) as client:
            client.random_z(0, seed=0)
            for mode in ("file", "stream"):
                client.set_delivery(mode)
                over, gen, total = [], [], []
                for i in range(requests + 3):
                    n = len(server.timings)
                    t0 = time.perf_counter()
                    audio = client.synth("bench", pitch)
                    rtt = time.perf_counter() - t0
                    deadline = time.monotonic() + 5
                    while len(server.timings) == n and time.monotonic() < deadline:
                        time.sleep(0.0005)
                    if len(audio) != model.audio_length:
                        raise RuntimeError(f"got {len(audio)} samples")
                    if i >= 3:
                        g = server.timings[-1].generate
                        over.append(1e3 * (rtt - g))
                        gen.append(1e3 * g)
                        total.append(1e3 * rtt)
                reports.append(ModeReport(mode, statistics.median(over), _pct(over, 95),
                                          statistics.median(gen), statistics.median(total),
                                          requests))
    return reports


def format_report(reports: list[ModeReport]) -> str:
    """A small table."""
    lines = ["mode    overhead p50  overhead p95  generate p50  total p50  (ms)"]
    for r in reports:
        lines.append(f"{r.mode:<7} {r.overhead_p50:12.2f} {r.overhead_p95:13.2f} "
                     f"{r.generate_p50:13.2f} {r.total_p50:10.2f}   n={r.requests}")
    return "\n".join(lines)
