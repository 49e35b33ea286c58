"""The soak's clients (``ganspacesynth bench-server --soak``, :mod:`ganspace_server.soak`): a
player with its own UDP socket that acknowledges streams, checks every delivery (notes, streams,
banks) and counts every answer, and the phrases a keyboard patch, a HALLU patch and a script
play."""

from __future__ import annotations

import itertools
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import soundfile as sf

from ganspace_server import oscwire, protocol
from ganspace_server.server import Server

SYNC_TIMEOUT = 120.0  #: seconds a player waits for /synced before counting its replies lost
BATCH = 4  #: notes per /synth.batch of the keyboard player
BANK_SPAN = 4  #: semitones from the lowest to the highest pitch of a keyboard bank (<= 5 notes)
EXPECTED_FAILS = ("superseded",)  #: /fail reasons that are part of playing (latest wins)
# The address of each reply a player counts: one per command it sends (events are not counted).
_ANSWERS = ("/done", "/fail", "/synced", "/status.reply", "/clients.reply", "/z.reply",
            "/coef.reply", "/version.reply")


class Tally:
    """What all players saw in the current interval (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.notes: list[str] = []  # the first distinct errors
        self.banks = 0  # banks delivered whole, over the whole soak
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

    def bank(self) -> None:
        """Count a bank delivered whole."""
        with self.lock:
            self.banks += 1

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


@dataclass
class _Bank:
    """A bank being delivered: what ``/bank.begin`` announced, and the channels and keys that
    arrived since."""

    frames: int
    pitches: list[int]
    channels: int = 0
    keys: bool = False


class Player:
    """One soak client, like a patch or a script: its own UDP socket and a receiver thread that
    acknowledges stream chunks, checks every delivery and counts answers. Commands are sent
    without waiting; :meth:`sync` ends a phrase (``/sync``) and counts what never came back."""

    def __init__(self, name: str, server: Server, tally: Tally, delivery: str,
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
        self._banks: dict[str, _Bank] = {}  # bank name -> what arrived of it (file delivery)
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
        self._banks.clear()
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
        elif address == "/bank.begin":
            self._banks[str(args[0])] = _Bank(int(args[1]), [int(x) for x in args[3:]])
        elif address in ("/bank.file", "/bank.keys"):
            self._bank_part(address, args)
        if address not in _ANSWERS:
            return
        self.tally.add(replies=1)
        if address == "/fail" and args[1] not in EXPECTED_FAILS:
            self.tally.error(f"{self.name}: /fail {args[0]} {args[1]}")
        elif address == "/done" and len(args) > 1:
            if args[0] == "/bank":
                self._bank_done(str(args[1]), [int(x) for x in args[2:]])
            self._timed(str(args[1]))
        with self._cond:
            self._answered += 1
            if address == "/synced":
                self._synced.add(int(args[0]))
            self._cond.notify_all()

    def _bank_part(self, address: str, args: list[Any]) -> None:
        """Check a ``/bank.file`` (a WAV of ``count`` channels of the announced length, the
        channels following those before) or ``/bank.keys`` (every MIDI key mapped to an announced
        pitch) against its ``/bank.begin``."""
        name = str(args[0])
        bank = self._banks.get(name)
        if bank is None:
            self.tally.error(f"{self.name}: {address} {name} without /bank.begin")
            return
        if address == "/bank.keys":
            keys = [int(x) for x in args[1:]]
            bank.keys = len(keys) == protocol.MIDI_MAX + 1 and set(keys) <= set(bank.pitches)
            if not bank.keys:
                self.tally.error(f"{self.name}: bank {name}: /bank.keys {keys} do not fit "
                                 f"its pitches {bank.pitches}")
            return
        path, first, count = Path(str(args[1])), int(args[2]), int(args[3])
        try:
            info = sf.info(str(path))
        except (OSError, RuntimeError) as exc:  # libsndfile's errors are RuntimeErrors
            self.tally.error(f"{self.name}: bank {name}: {path} is unreadable ({exc})")
            return
        if (info.channels, info.frames, first) != (count, bank.frames, bank.channels):
            self.tally.error(f"{self.name}: bank {name}: {path} holds {info.channels} x "
                             f"{info.frames} from channel {first}, expected {count} x "
                             f"{bank.frames} from {bank.channels}")
        bank.channels += count

    def _bank_done(self, name: str, pitches: list[int]) -> None:
        """A bank's ``/done``: every announced pitch arrived as a channel, and the keys."""
        bank = self._banks.pop(name, None)
        if bank is None or bank.pitches != pitches or bank.channels != len(pitches) \
                or not bank.keys:
            self.tally.error(f"{self.name}: bank {name} answered /done {pitches} but arrived "
                             f"as {bank}")
        else:
            self.tally.bank()

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
def keys_phrase(p: Player) -> None:
    """A keyboard patch (ganspacesynth.pd, ganspacesynth_keys.pd): slider sweeps with
    latest-wins, z and pitch changes, a chord now and then, and now and then a bank of a small
    pitch range re-rendered as the timbre pad moves (a newer /bank supersedes the older)."""
    kind = p.rng.choices(("sweep", "z", "pitch", "chord", "bank"), (5, 2, 2, 1, 1))[0]
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
    elif kind == "bank":
        lo = p.rng.choice(p.pitches[:-BANK_SPAN])
        p.send("/bank.source", p.rng.choice((-1, 0, 1, 2)))  # noz mode or a z slot
        for _ in range(p.rng.randrange(1, 4)):  # auto render: each pad move renders the bank
            p.send("/coef.set", p.rng.randrange(p.k), round(p.rng.uniform(-2, 2), 3))
            p.job("/bank", p.label("b"), lo, lo + BANK_SPAN)
            time.sleep(p.rng.uniform(0.02, 0.06))
    else:
        notes = [(p.rng.randrange(3), p.rng.choice(p.pitches)) for _ in range(BATCH)]
        p.job("/synth.batch", p.label("c"), *[x for note in notes for x in note])
    p.sync()


def hallu_phrase(p: Player) -> None:
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


def script_phrase(p: Player) -> None:
    """A script (compose_example.py): queries, slerp, notes."""
    for address in ("/status", "/clients"):
        p.send(address)
    p.send("/z.get", 0)
    p.send("/coef.get", 0, 8)
    p.send("/z.slerp", 3, 0, 1, round(p.rng.random(), 3))
    p.job("/synth", p.label("x"), p.rng.choice(p.pitches), 3)
    p.sync()


Phrase = Callable[[Player], None]


def play(p: Player, phrase: Phrase, until: float, stop: threading.Event) -> None:
    """Play phrases with pauses until ``until`` (perf_counter) or ``stop``."""
    try:
        while time.perf_counter() < until and not stop.is_set():
            phrase(p)
            stop.wait(p.rng.uniform(0.2, 1.5))
    except Exception as exc:  # reported as an error of the soak, never a silent thread death
        p.tally.error(f"{p.name}: {type(exc).__name__}: {exc}")
