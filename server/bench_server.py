"""``ganspacesynth bench-server``: what the OSC bridge adds on top of generation, on loopback;
``--soak MINUTES``: three clients playing for a long time, with targets.

A server runs in this process on 127.0.0.1 (its own threads), the Python client sends ``/synth``
for one 4 s note and waits for the buffer. Overhead = the client's request-to-reply time minus the
generation time the server's worker measured for that job. Measured for file delivery (WAV written
and read back) and stream delivery (64000 floats in acked chunks).

The soak (:func:`run_soak`) plays a realistic session from three clients at once, one of them
vanishing halfway and a new one joining, and reports per interval: requests, replies, lost
replies, latency beyond generation (p50/p95/p99), RSS, cache folder size, open sessions, errors;
then checks the targets (docs/server.md, "Soak").
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ganspace.engine.model import GANSynthModel, default_pitch, random_model
from ganspace.formats import load_model
from ganspace.space.directions import Directions, load_directions
from ganspace_server import oscwire, protocol
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


def run_bench(model_spec: str, requests: int, device: str | None) -> list[ModeReport]:
    """Run ``requests`` timed /synth requests per delivery mode (after 3 warm-ups)."""
    model = (random_model("tiny", device=device) if model_spec == "tiny" else
              load_model(model_spec, device=device))
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


# ---- soak: three clients playing for minutes --------------------------------------------------
RSS_SLOPE_MB_PER_HOUR = 20.0  #: target: RSS growth after the first interval
RSS_NOISE_MB = 4.0  #: allowance for page-granular RSS and the allocator keeping freed memory
P99_FACTOR, P99_MARGIN_MS = 2.0, 50.0  #: p99 flat: 2nd half <= factor x 1st half + margin
SYNC_TIMEOUT = 120.0  #: seconds a player waits for /synced before counting its replies lost
VANISH_BURST = 6  #: stream notes the vanishing client queues before it disappears
BATCH = 4  #: notes per /synth.batch of the keyboard player
EXPECTED_FAILS = ("superseded",)  #: /fail reasons that are part of playing (latest wins)
# The address of each reply a player counts: one per command it sends (events are not counted).
_ANSWERS = ("/done", "/fail", "/synced", "/status.reply", "/clients.reply", "/z.reply",
            "/coef.reply", "/version.reply")


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
    """A soak's table, its checks, and the first errors seen (for the log)."""

    rows: list[SoakRow]
    checks: list[SoakCheck]
    error_notes: list[str]

    @property
    def ok(self) -> bool:
        """Whether every target was met."""
        return all(c.ok for c in self.checks)


class _Tally:
    """What all players saw in the current interval (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.notes: list[str] = []  # the first distinct errors
        self._reset()

    def _reset(self) -> None:
        self.requests = self.replies = self.lost = self.errors = 0
        self.overhead_ms: list[float] = []
        self.wait_ms: list[float] = []

    def add(self, requests: int = 0, replies: int = 0, lost: int = 0) -> None:
        with self.lock:
            self.requests += requests
            self.replies += replies
            self.lost += lost

    def latency(self, overhead_ms: float, wait_ms: float) -> None:
        with self.lock:
            self.overhead_ms.append(overhead_ms)
            self.wait_ms.append(wait_ms)

    def error(self, note: str) -> None:
        with self.lock:
            self.errors += 1
            if len(self.notes) < 20 and note not in self.notes:
                self.notes.append(note)

    def take(self) -> tuple[int, int, int, int, list[float], list[float]]:
        """The interval's counts and latency samples; starts the next interval."""
        with self.lock:
            out = (self.requests, self.replies, self.lost, self.errors, self.overhead_ms,
                   self.wait_ms)
            self._reset()
            return out


class _Player:
    """One soak client, like a patch or a script: its own UDP socket and a receiver thread that
    acknowledges stream chunks, checks every delivery and counts answers. Commands are sent
    without waiting; :meth:`sync` ends a phrase (``/sync``) and counts what never came back."""

    def __init__(self, name: str, server: Server, tally: _Tally, delivery: str,
                 rng: random.Random) -> None:
        self.name = name
        self.server = server
        self.tally = tally
        self.rng = rng
        self.steps = 1  # HALLU steps (from /hallu.step)
        self.pitches = server.state.model.pitches
        directions = server.state.directions
        self.k = min(8, directions.count) if directions else 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2**22)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.address: tuple[str, int] = self._sock.getsockname()[:2]
        self._cond = threading.Condition()
        self._expected = 0  # answers expected in this phrase
        self._answered = 0
        self._synced: set[int] = set()
        self._sent_at: dict[str, float] = {}  # job label -> perf_counter() when sent
        self._streams: dict[str, dict[int, int]] = {}  # buffer -> {offset: floats}
        self._sync_ids = itertools.count(1)
        self._labels = itertools.count(1)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._receive, name=f"soak-{name}", daemon=True)
        self._thread.start()
        self.send("/delivery", delivery)
        for slot in range(3):
            self.send("/z.random", slot, rng.randrange(1, 2**24))
        self.sync()

    # ---- sending --------------------------------------------------------------------------------
    def label(self, kind: str) -> str:
        """A fresh buffer name (it identifies the job's /done)."""
        return f"{self.name}{kind}{next(self._labels)}"

    def send(self, address: str, *args: int | float | str, answered: bool = True) -> None:
        """Send one command; ``answered``: it is counted as a request expecting one answer. A
        job's first argument (its buffer name) is remembered to time its /done."""
        if answered:
            with self._cond:
                self._expected += 1
            self.tally.add(requests=1)
            if protocol.COMMANDS[address].job:
                self._sent_at[str(args[0])] = time.perf_counter()
        self._sock.sendto(oscwire.encode(address, *args), self.server.address)

    def job(self, address: str, *args: int | float | str, latest: str | None = None) -> None:
        """Send a job, tagged ``/latest <latest>`` when given."""
        if latest is not None:
            self.send("/latest", latest, answered=False)
        self.send(address, *args)

    def sync(self) -> None:
        """Wait for ``/synced`` (every earlier command answered and delivered); count answers
        that never came as lost, answers beyond one per command as errors."""
        ident = next(self._sync_ids)
        self.send("/sync", ident)
        with self._cond:
            arrived = self._cond.wait_for(lambda: ident in self._synced, SYNC_TIMEOUT)
            self._synced.discard(ident)
            missing = self._expected - self._answered
            self._expected = self._answered = 0
        self._sent_at.clear()  # superseded jobs end with a /fail that names no buffer
        self._streams.clear()  # and a stream superseded while it was sent never ends
        if missing > 0:
            self.tally.add(lost=missing)
        elif missing < 0:
            self.tally.error(f"{self.name}: {-missing} answers more than commands")
        if not arrived:
            self.tally.error(f"{self.name}: no /synced {ident} within {SYNC_TIMEOUT:g} s")

    def vanish(self, burst: int) -> None:
        """Queue ``burst`` notes (not counted) and disappear without acknowledging anything."""
        for _ in range(burst):
            self.send("/synth", self.label("v"), answered=False)
        self.close()

    def close(self) -> None:
        """Close the socket and stop the receiver thread."""
        self._closed.set()
        self._thread.join(timeout=2)
        self._sock.close()

    # ---- receiving ------------------------------------------------------------------------------
    def _receive(self) -> None:
        while not self._closed.is_set():
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                if data.startswith(b"/buffer.chunk\0"):
                    self._chunk(data)
                else:
                    for address, args in oscwire.parse(data):
                        self._message(address, args)
            except Exception as exc:  # a malformed reply is an error of the server
                self.tally.error(f"{self.name}: {type(exc).__name__}: {exc}")

    def _chunk(self, data: bytes) -> None:
        _, head, values = oscwire.decode_floats(data)
        buffer, offset = str(head[0]), int(head[1])
        self._sock.sendto(oscwire.encode("/buffer.ack", buffer, offset), self.server.address)
        if buffer in self._streams:
            self._streams[buffer][offset] = len(values)

    def _message(self, address: str, args: list[Any]) -> None:
        if address == "/buffer.begin":
            self._streams[str(args[0])] = {}
        elif address == "/buffer.end":
            got = sum(self._streams.pop(str(args[0]), {}).values())
            if got != int(args[1]):
                self.tally.error(f"{self.name}: stream {args[0]} got {got} of {args[1]} floats")
        elif address == "/buffer.file":
            path = Path(str(args[1]))
            if not path.is_file() or path.stat().st_size < 4 * int(args[2]):
                self.tally.error(f"{self.name}: {path} is missing or short")
        elif address == "/hallu.step":
            self.steps = int(args[1])
        if address not in _ANSWERS:
            return
        self.tally.add(replies=1)
        if address == "/fail" and args[1] not in EXPECTED_FAILS:
            self.tally.error(f"{self.name}: /fail {args[0]} {args[1]}")
        elif address == "/done" and len(args) > 1:
            self._timed(str(args[1]))
        with self._cond:
            self._answered += 1
            if address == "/synced":
                self._synced.add(int(args[0]))
            self._cond.notify_all()

    def _timed(self, label: str) -> None:
        """Latency beyond generation of a job's /done (the server recorded the job's timing
        just before sending it)."""
        sent = self._sent_at.pop(label, None)
        if sent is None:
            return
        rtt = time.perf_counter() - sent
        for t in reversed(list(self.server.timings)):
            if t.label == label and t.client == self.address:
                self.tally.latency(1e3 * (rtt - t.queued - t.generate), 1e3 * t.queued)
                return
        self.tally.error(f"{self.name}: no timing recorded for {label}")


# What each kind of player does, phrase by phrase (a phrase ends with /sync, then a pause).
def _keys_phrase(p: _Player) -> None:
    """A keyboard patch (ganspacesynth.pd): slider sweeps with latest-wins, z and pitch changes,
    a chord now and then."""
    kind = p.rng.choices(("sweep", "z", "pitch", "chord"), (5, 2, 2, 1))[0]
    # EXTENSION POINT (issue 12): once /bank exists, add a "bank" phrase here that stores the
    # current sound in a bank slot and recalls another one before a sweep.
    pitch = p.rng.choice(p.pitches)
    if kind == "sweep":
        index = p.rng.randrange(p.k)
        for _ in range(p.rng.randrange(5, 16)):
            p.send("/coef.set", index, round(p.rng.uniform(-2, 2), 3))
            p.job("/synth", p.label("s"), pitch, latest="slider")
            time.sleep(p.rng.uniform(0.02, 0.06))
    elif kind == "z":
        p.send("/z.random", 0, p.rng.randrange(1, 2**24))
        p.job("/synth", p.label("z"), pitch)
    elif kind == "pitch":
        p.send("/pitch", pitch)
        p.job("/synth", p.label("p"))
    else:
        notes = [(p.rng.randrange(3), p.rng.choice(p.pitches)) for _ in range(BATCH)]
        p.job("/synth.batch", p.label("c"), *[x for note in notes for x in note])
    p.sync()


def _hallu_phrase(p: _Player) -> None:
    """A HALLU sequencer patch (halluseq.pd): edit steps, settings, hallucinate in coefficient
    and z space, preview sweeps without z."""
    kind = p.rng.choices(("steps", "settings", "hallu", "halluz", "preview"), (3, 1, 2, 2, 3))[0]
    if kind == "steps":
        p.send("/coef.set", p.rng.randrange(p.k), round(p.rng.uniform(-2, 2), 3))
        p.send("/hallu.add" if p.steps < 4 else "/hallu.remove")
    elif kind == "settings":
        for name, value in (("interp", 2), ("spacing", 0.1), ("trim", 0.0), ("attack", 0.01),
                            ("sustain", 0.2), ("release", 0.1)):
            p.send(f"/hallu.{name}", value)
    elif kind == "hallu":
        p.job("/hallu", p.label("h"))
    elif kind == "halluz":
        p.job("/hallu.z", p.label("hz"), 2, 1, p.rng.randrange(1, 2**24))
    else:
        for _ in range(p.rng.randrange(3, 10)):
            p.send("/coef.set", 0, round(p.rng.uniform(-2, 2), 3))
            p.job("/synth.noz", p.label("n"), latest="preview")
            time.sleep(p.rng.uniform(0.02, 0.06))
    p.sync()


def _script_phrase(p: _Player) -> None:
    """A script (compose_example.py): queries, slerp, notes."""
    for address in ("/status", "/clients"):
        p.send(address)
    p.send("/z.get", 0)
    p.send("/coef.get", 0, 8)
    p.send("/z.slerp", 3, 0, 1, round(p.rng.random(), 3))
    p.job("/synth", p.label("x"), p.rng.choice(p.pitches), 3)
    p.sync()


Phrase = Callable[[_Player], None]


def _play(p: _Player, phrase: Phrase, until: float, stop: threading.Event) -> None:
    """Play phrases with pauses until ``until`` (perf_counter) or ``stop``."""
    try:
        while time.perf_counter() < until and not stop.is_set():
            phrase(p)
            stop.wait(p.rng.uniform(0.2, 1.5))
    except Exception as exc:  # reported as an error of the soak, never a silent thread death
        p.tally.error(f"{p.name}: {type(exc).__name__}: {exc}")


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
    chords), a HALLU patch (stream delivery: steps, settings, hallucinations, preview sweeps) and
    a script (file delivery: queries, slerp, notes) play phrases with pauses. Halfway, the HALLU
    patch queues a few notes and vanishes without acknowledging them, and a new HALLU patch
    joins. The server runs in this process with its defaults, except a cache of ``cache_mb`` MB in
    a temporary folder and sessions expiring after a quarter of the soak (so that the vanished
    client's session expires before the end). Every ``interval`` seconds a row is made (passed
    to ``on_row`` as well).
    """
    model = (random_model("tiny", device=device) if model_spec == "tiny" else
             load_model(model_spec, device=device))
    d = load_directions(directions) if directions else random_directions(model)
    duration = 60.0 * minutes
    tally = _Tally()
    rng = random.Random(seed)
    stop = threading.Event()

    def start_player(name: str, delivery: str, phrase: Phrase, until: float
                     ) -> tuple[_Player, threading.Thread]:
        p = _Player(name, server, tally, delivery, random.Random(rng.random()))
        t = threading.Thread(target=_play, args=(p, phrase, until, stop), daemon=True)
        t.start()
        return p, t

    with tempfile.TemporaryDirectory() as cache:
        config = ServerConfig(port=0, cache_dir=Path(cache), cache_bytes=int(cache_mb * 2**20),
                              session_idle=max(10.0, duration / 4))
        with Server(model, config, model_spec, d) as server:
            start = time.perf_counter()
            half, end = start + duration / 2, start + duration
            keys = start_player("keys", "file", _keys_phrase, end)
            hallu = start_player("hallu", "stream", _hallu_phrase, half)
            script = start_player("script", "file", _script_phrase, end)
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
                    hallu = start_player("hallu2", "stream", _hallu_phrase, end)
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
                                 BATCH * (4 * model.audio_length + 4096), config.session_idle)
    return SoakReport(rows, checks, list(tally.notes))


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


def _row(tally: _Tally, minute: float, cache: Path, server: Server, rss: float) -> SoakRow:
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
    """The table, the checks and the first errors."""
    lines = [SOAK_HEADER]
    lines += [format_soak_row(r) for r in report.rows]
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
