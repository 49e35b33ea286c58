"""``ganspacesynth bench-server --soak MINUTES``: three clients playing for a long time, with
targets.

:func:`run_soak` plays a realistic session from three clients at once (the players of
:mod:`ganspace_server.soak_players`), one of them vanishing halfway and a new one joining, and
reports per interval: requests, replies, lost replies, latency beyond generation
(p50/p95/p99), RSS, cache folder size, open sessions, errors; then checks the targets
(:func:`soak_checks`; docs/server.md, "Soak").
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ganspace.engine.model import GANSynthModel, random_model
from ganspace.formats import load_model
from ganspace.space.directions import Directions, load_directions
from ganspace_server.config import ServerConfig
from ganspace_server.server import Server
from ganspace_server.soak_players import (
    BANK_SPAN,
    BATCH,
    SYNC_TIMEOUT,
    Phrase,
    Player,
    Tally,
    hallu_phrase,
    keys_phrase,
    play,
    script_phrase,
)

RSS_SLOPE_MB_PER_HOUR = 20.0  #: target: RSS growth after the first interval
RSS_NOISE_MB = 4.0  #: allowance for page-granular RSS and the allocator keeping freed memory
P99_FACTOR, P99_MARGIN_MS = 2.0, 50.0  #: p99 flat: 2nd half <= factor x 1st half + margin
VANISH_BURST = 6  #: stream notes the vanishing client queues before it disappears


@dataclass(frozen=True)
class SoakRow:
    """One interval of a soak. Latencies in ms: ``p50``..``p99`` beyond generation (a job's
    reply time minus its generation and its wait for the worker), ``wait95`` the 95th percentile
    of that wait (the generation of other jobs ahead of it). ``rss_mb``: the median of RSS
    sampled every second; ``cache_mb`` and ``sessions`` at the end of the interval."""

    minute: float
    requests: int
    replies: int
    lost: int
    p50: float
    p95: float
    p99: float
    wait95: float
    rss_mb: float
    cache_mb: float
    sessions: int
    errors: int


@dataclass(frozen=True)
class SoakCheck:
    """One target of the soak and whether it was met."""

    target: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class SoakReport:
    """A soak's table, its checks, the first errors seen (for the log) and the keyboard's banks
    delivered whole (each one checked: its WAV channels, its keys, its /done)."""

    rows: list[SoakRow]
    checks: list[SoakCheck]
    error_notes: list[str]
    banks: int

    @property
    def ok(self) -> bool:
        """Whether every target was met."""
        return all(c.ok for c in self.checks)


def random_directions(model: GANSynthModel, k: int = 8, seed: int = 0) -> Directions:
    """Random unit directions on the model's first layer (for a soak: any sound will do)."""
    layer = model.generator.layer_names()[0]
    h, w, c = model.layer_shape(layer)
    rng = np.random.default_rng(seed)
    comp = rng.standard_normal((k, h * w * c)).astype(np.float32)
    comp /= np.linalg.norm(comp, axis=1, keepdims=True)
    stdev = np.linspace(2.0, 1.0, k).astype(np.float32)
    mean = (0.1 * rng.standard_normal((h, w, c))).astype(np.float32)
    return Directions(layer, comp.reshape(k, h, w, c), stdev, stdev**2 / np.sum(stdev**2), mean,
                      model.fingerprint, {"estimator": "soak: random"})


def rss_mb() -> float:
    """Resident memory of this process in MB (Linux: now; elsewhere: the peak so far)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def folder_mb(folder: Path) -> float:
    """Total size of the files in a folder, in MB."""
    total = 0
    for entry in os.scandir(folder):
        try:
            total += entry.stat().st_size
        except FileNotFoundError:  # deleted by the cache meanwhile
            pass
    return total / 2**20


def run_soak(minutes: float, model_spec: str = "tiny", device: str | None = "cpu",
             directions: Path | None = None, interval: float = 60.0,
             cache_mb: float = 256.0, seed: int = 0,
             on_row: Callable[[SoakRow], None] | None = None) -> SoakReport:
    """Play a session from 3 clients at once for ``minutes`` and check the targets.

    A keyboard patch (file delivery: slider sweeps with latest-wins, z and pitch changes,
    chords, banks of a few pitches with latest-wins), a HALLU patch (stream delivery: steps,
    settings, hallucinations, preview sweeps) and a script (file delivery: queries, slerp, notes)
    play phrases with pauses. Halfway, the HALLU patch queues a few notes and vanishes without
    acknowledging them, and a new HALLU patch joins. The server runs in this process with its
    defaults, except a cache of ``cache_mb`` MB in a temporary folder and sessions expiring after
    a quarter of the soak (so that the vanished client's session expires before the end). Every
    ``interval`` seconds a row is made (passed to ``on_row`` as well).
    """
    model = (random_model("tiny", device=device) if model_spec == "tiny" else
             load_model(model_spec, device=device))
    d = load_directions(directions) if directions else random_directions(model)
    duration = 60.0 * minutes
    tally = Tally()
    rng = random.Random(seed)
    stop = threading.Event()

    def start_player(name: str, delivery: str, phrase: Phrase, until: float
                     ) -> tuple[Player, threading.Thread]:
        p = Player(name, server, tally, delivery, random.Random(rng.random()))
        t = threading.Thread(target=play, args=(p, phrase, until, stop), daemon=True)
        t.start()
        return p, t

    with tempfile.TemporaryDirectory() as cache:
        config = ServerConfig(port=0, cache_dir=Path(cache), cache_bytes=int(cache_mb * 2**20),
                              session_idle=max(10.0, duration / 4))
        with Server(model, config, model_spec, d) as server:
            start = time.perf_counter()
            half, end = start + duration / 2, start + duration
            keys = start_player("keys", "file", keys_phrase, end)
            hallu = start_player("hallu", "stream", hallu_phrase, half)
            script = start_player("script", "file", script_phrase, end)
            marks = [min(start + interval * k, end)
                     for k in range(1, math.ceil(duration / interval - 1e-9) + 1)]
            rows: list[SoakRow] = []
            vanished = False
            for mark in marks:
                rss: list[float] = []
                if not vanished and half <= mark:
                    _sample_rss_until(half, rss)
                    hallu[1].join()  # it stops playing at half time (after its phrase) ...
                    hallu[0].vanish(VANISH_BURST)  # ... and vanishes; a new one joins
                    hallu = start_player("hallu2", "stream", hallu_phrase, end)
                    vanished = True
                _sample_rss_until(mark, rss)
                rows.append(_row(tally, (time.perf_counter() - start) / 60, Path(cache), server,
                                 statistics.median(rss)))
                if on_row:
                    on_row(rows[-1])
            stop.set()
            for p, t in (keys, hallu, script):
                t.join(timeout=SYNC_TIMEOUT + 10)
                p.close()
            rows[-1] = _merge(rows[-1], _row(tally, rows[-1].minute, Path(cache), server,
                                             rows[-1].rss_mb))
            checks = soak_checks(rows, server.dropped, server.expired, config.cache_bytes,
                                 max(BATCH, BANK_SPAN + 1) * (4 * model.audio_length + 4096),
                                 config.session_idle)
    return SoakReport(rows, checks, list(tally.notes), tally.banks)


def _merge(row: SoakRow, late: SoakRow) -> SoakRow:
    """The last row with the counts of the phrases that ended after it (the players finish
    their phrase when the soak ends)."""
    return dataclasses.replace(row, requests=row.requests + late.requests,
                               replies=row.replies + late.replies, lost=row.lost + late.lost,
                               errors=row.errors + late.errors)


def _sample_rss_until(until: float, samples: list[float]) -> None:
    """Sleep until ``until`` (perf_counter), appending RSS to ``samples`` every second (a row
    shows their median: RSS jumps by tens of MB for a moment when large buffers come and go)."""
    samples.append(rss_mb())
    while (left := until - time.perf_counter()) > 0:
        time.sleep(min(1.0, left))
        samples.append(rss_mb())


def _row(tally: Tally, minute: float, cache: Path, server: Server, rss: float) -> SoakRow:
    requests, replies, lost, errors, overhead, wait = tally.take()
    if overhead:
        p50, p95, p99 = (float(np.percentile(overhead, q)) for q in (50, 95, 99))
        wait95 = float(np.percentile(wait, 95))
    else:
        p50 = p95 = p99 = wait95 = float("nan")
    return SoakRow(minute, requests, replies, lost, p50, p95, p99, wait95, rss,
                   folder_mb(cache), len(server.sessions()), errors)


def soak_checks(rows: list[SoakRow], dropped: int, expired: int, cache_bytes: int,
                job_bytes: int, session_idle: float) -> list[SoakCheck]:
    """The soak's targets, judged after the first interval (warm-up), from its rows, the jobs
    the server dropped for gone clients and the sessions that expired."""
    after = rows[1:]
    checks: list[SoakCheck] = []
    lost = sum(r.lost for r in after)
    checks.append(SoakCheck("no reply lost after the first interval", lost == 0,
                            f"{lost} lost"))
    errors = sum(r.errors for r in after)
    checks.append(SoakCheck("no errors after the first interval", errors == 0,
                            f"{errors} errors"))
    rss = f"RSS growth <= {RSS_SLOPE_MB_PER_HOUR:g} MB/hour (+{RSS_NOISE_MB:g} MB noise)"
    if len(after) >= 2:  # the median RSS of the second interval to that of the last one
        hours = (rows[-1].minute - rows[1].minute) / 60
        growth = rows[-1].rss_mb - rows[1].rss_mb
        allowed = RSS_SLOPE_MB_PER_HOUR * hours + RSS_NOISE_MB
        checks.append(SoakCheck(rss, growth <= allowed, f"{growth:+.1f} MB in {60 * hours:.1f} "
                                f"min (allowed {allowed:.1f} MB)"))
    else:
        checks.append(SoakCheck(rss, False, "too short: needs 3 intervals or more"))
    bound = (cache_bytes + job_bytes) / 2**20
    biggest = max(r.cache_mb for r in rows)
    checks.append(SoakCheck("cache folder within its bound", biggest <= bound,
                            f"largest {biggest:.1f} MB, bound {bound:.1f} MB (cache + one job)"))
    p99 = [r.p99 for r in after if np.isfinite(r.p99)]
    if len(p99) >= 2:
        first, second = p99[: len(p99) // 2], p99[len(p99) // 2:]
        base, late = statistics.median(first), statistics.median(second)
        checks.append(SoakCheck(
            "p99 flat", late <= P99_FACTOR * base + P99_MARGIN_MS,
            f"median p99 {base:.1f} ms in the first half, {late:.1f} ms in the second (allowed "
            f"{P99_FACTOR:g} x + {P99_MARGIN_MS:g} ms)"))
    else:
        checks.append(SoakCheck("p99 flat", False, "too short: needs 3 intervals or more"))
    checks.append(SoakCheck("the vanished client's queued jobs were dropped",
                            dropped >= VANISH_BURST - 1, f"{dropped} dropped of {VANISH_BURST}"))
    checks.append(SoakCheck("the vanished client's session expired", expired >= 1,
                            f"{expired} expired (session idle {session_idle:g} s)"))
    return checks


def format_soak(report: SoakReport) -> str:
    """The table, the banks delivered, the checks and the first errors."""
    lines = [SOAK_HEADER]
    lines += [format_soak_row(r) for r in report.rows]
    lines.append(f"banks delivered whole: {report.banks}")
    lines.append("")
    lines += [f"{'PASS' if c.ok else 'FAIL'}  {c.target}: {c.detail}" for c in report.checks]
    if report.error_notes:
        lines.append("first errors:")
        lines += [f"  {n}" for n in report.error_notes]
    return "\n".join(lines)


SOAK_HEADER = ("   min  requests   replies  lost   p50 ms   p95 ms   p99 ms  wait95 ms   RSS MB  "
               "cache MB  sessions  errors")


def format_soak_row(r: SoakRow) -> str:
    """One row of the soak table."""
    return (f"{r.minute:6.1f} {r.requests:9d} {r.replies:9d} {r.lost:5d} {r.p50:8.1f} "
            f"{r.p95:8.1f} {r.p99:8.1f} {r.wait95:10.1f} {r.rss_mb:8.1f} {r.cache_mb:9.1f} "
            f"{r.sessions:9d} {r.errors:7d}")
