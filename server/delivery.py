"""Buffer delivery: float WAV files in a bounded cache folder, acked OSC streams, or the server's
sound card; and banks (many notes of one ``/bank`` job: multi-channel WAVs or one segmented
stream)."""

from __future__ import annotations

import io
import itertools
import logging
import os
import re
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from ganspace_server import oscwire, protocol
from ganspace_server.jobs import Result
from ganspace_server.session import Address, Session

log = logging.getLogger(__name__)

FILE_PREFIX = "gss"
_OWN_FILE = re.compile(rf"{FILE_PREFIX}\d+-\d+-[A-Za-z0-9_-]*\.wav")


class DeliveryError(Exception):
    """A buffer could not be delivered; the text is the /fail reason."""


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/ganspacesynth/buffers`` (``~/.cache/...`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ganspacesynth" / "buffers"


class FileCache:
    """Writes float WAVs with unique names into one folder and keeps its total size bounded.

    Only files this process wrote are ever deleted, oldest first, and never those of the job
    being delivered; leftovers of earlier runs (same name pattern, older than ``stale_seconds``)
    are removed at start.
    """

    def __init__(self, folder: Path, max_bytes: int, stale_seconds: float = 3600.0) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder.resolve()
        self.max_bytes = max_bytes
        self._files: deque[tuple[Path, int]] = deque()
        self._total = 0
        self._seq = itertools.count(1)
        self._lock = threading.Lock()
        now = time.time()
        for p in self.folder.iterdir():
            if _OWN_FILE.fullmatch(p.name) and now - p.stat().st_mtime > stale_seconds:
                p.unlink(missing_ok=True)

    def write_all(self, buffers: list[tuple[str, np.ndarray]], sample_rate: int) -> list[Path]:
        """Write one job's buffers as 32-bit float WAVs, then delete the oldest earlier files
        while the folder holds more than ``max_bytes``. Returns the absolute paths."""
        written = [self._write(name, audio, sample_rate) for name, audio in buffers]
        with self._lock:
            earlier = len(self._files) - len(written)
            while self._total > self.max_bytes and earlier > 0:
                old, old_size = self._files.popleft()
                old.unlink(missing_ok=True)
                self._total -= old_size
                earlier -= 1
        return written

    def _write(self, buffer: str, audio: np.ndarray, sample_rate: int) -> Path:
        safe = re.sub(r"[^A-Za-z0-9_-]", "_", buffer)[:32]
        with self._lock:
            name = f"{FILE_PREFIX}{os.getpid()}-{next(self._seq)}-{safe}.wav"
        path = self.folder / name
        if path.parent != self.folder:  # cannot happen with the pattern above; never write outside
            raise DeliveryError("refusing a file name outside the cache folder")
        data = io.BytesIO()  # encode in memory, then one write: libsndfile's small writes are slow
        sf.write(data, np.asarray(audio, np.float32), sample_rate, subtype="FLOAT", format="WAV")
        tmp = path.with_suffix(".part")
        tmp.write_bytes(data.getbuffer())
        os.replace(tmp, path)  # a reader never sees a half-written file
        size = data.tell()
        with self._lock:
            self._files.append((path, size))
            self._total += size
        return path

    def clear(self) -> None:
        """Delete every file this cache wrote."""
        with self._lock:
            while self._files:
                self._files.popleft()[0].unlink(missing_ok=True)
            self._total = 0


Send = Callable[[bytes, Address], None]


def stream(send: Send, session: Session, buffer: str, audio: np.ndarray, sample_rate: int,
           ack_timeout: float, tries: int, cancelled: Callable[[], bool],
           segment: int = 0) -> None:
    """Send ``audio`` as /buffer.begin, acked /buffer.chunk messages, /buffer.end.

    At most :data:`~ganspace_server.protocol.STREAM_WINDOW` chunks are unacknowledged; a chunk
    without an ack after ``ack_timeout`` seconds is sent again, ``tries`` times in all. With
    ``segment`` > 0 no chunk crosses a multiple of ``segment`` (a bank: one note per segment).

    Raises:
        DeliveryError: a chunk was never acknowledged, or the job was cancelled.
    """
    data = np.ascontiguousarray(audio, dtype=np.float32).reshape(-1)
    frames = int(data.size)
    step = segment or frames or 1
    ends = {o: min(o + protocol.CHUNK_FLOATS, s + step, frames)
            for s in range(0, frames, step)
            for o in range(s, min(s + step, frames), protocol.CHUNK_FLOATS)}
    offsets = list(ends)
    session.start_stream(buffer)
    try:
        send(oscwire.encode("/buffer.begin", buffer, frames, sample_rate), session.reply_to)
        sent: dict[int, tuple[float, int]] = {}  # offset -> (last send time, sends)
        nxt = 0
        acked: set[int] = set()
        while nxt < len(offsets) or sent:
            if cancelled():
                raise DeliveryError("cancelled")
            while nxt < len(offsets) and len(sent) < protocol.STREAM_WINDOW:
                off = offsets[nxt]
                _send_chunk(send, session.reply_to, buffer, off, data[off:ends[off]])
                sent[off] = (time.monotonic(), 1)
                nxt += 1
            oldest = min(t for t, _ in sent.values())
            wait = max(0.0, oldest + ack_timeout - time.monotonic())
            pending = set(sent)
            acked = session.wait_acks(pending, wait)
            for off in pending & acked:
                del sent[off]
            now = time.monotonic()
            for off, (t, n) in list(sent.items()):
                if now - t < ack_timeout:
                    continue
                if n >= tries:
                    raise DeliveryError(f"no /buffer.ack for {buffer} at offset {off} after "
                                        f"{n} tries")
                _send_chunk(send, session.reply_to, buffer, off, data[off:ends[off]])
                sent[off] = (now, n + 1)
        send(oscwire.encode("/buffer.end", buffer, frames, sample_rate), session.reply_to)
    finally:
        session.start_stream("")


def _send_chunk(send: Send, to: Address, buffer: str, offset: int, chunk: np.ndarray) -> None:
    send(oscwire.encode_floats("/buffer.chunk", (buffer, offset), chunk), to)


def play(audio: np.ndarray, sample_rate: int) -> None:
    """Play on the server's default output device (non-blocking).

    Raises:
        DeliveryError: sounddevice or PortAudio missing, no output device, or playback failed.
    """
    try:
        import sounddevice as sd
    except (ImportError, OSError) as exc:
        raise DeliveryError(f"play delivery needs sounddevice and PortAudio: {exc}") from None
    try:
        sd.query_devices(kind="output")
        sd.play(np.asarray(audio, np.float32), sample_rate)
    except Exception as exc:  # PortAudioError, ValueError (no device), ...
        raise DeliveryError(f"no usable sound card on the server: {exc}") from None


# ---- results that deliver themselves (banks) ----------------------------------------------------
@dataclass(frozen=True)
class Outlet:
    """Where one job's delivery goes: the transport, the client and its delivery mode (captured
    when the command arrived), the file cache, the stream's acknowledgement settings and the
    job's cancellation test."""

    send: Send
    session: Session
    mode: str
    cache: FileCache
    ack_timeout: float
    ack_tries: int
    cancelled: Callable[[], bool]

    def reply(self, address: str, *args: int | float | str) -> None:
        """Send the client one message."""
        self.send(oscwire.encode(address, *args), self.session.reply_to)


class OwnDelivery(ABC):
    """A job result that delivers itself instead of one ``/buffer.*`` per named buffer; the
    delivery thread calls :meth:`deliver`, then answers ``/done`` with the result's values."""

    @abstractmethod
    def deliver(self, out: Outlet) -> None:
        """Send everything the client needs before ``/done``.

        Raises:
            DeliveryError: the reason for ``/fail``.
        """


def nearest_keys(pitches: Sequence[int]) -> list[int]:
    """For every MIDI key 0..127 the nearest of the sorted ``pitches`` (on a tie the lower)."""
    p = np.asarray(pitches)
    keys = np.arange(protocol.MIDI_MAX + 1)
    return [int(x) for x in p[np.abs(keys[:, None] - p[None, :]).argmin(axis=1)]]


@dataclass(kw_only=True)
class BankResult(Result, OwnDelivery):
    """A rendered bank: ``audio`` [notes, frames] holds ``pitches`` (sorted) in order.

    Delivered as ``/bank.begin``, then (file) one ``/bank.file`` per WAV of at most
    :data:`~ganspace_server.protocol.BANK_CHANNELS` channels, or (stream) the notes one after
    another as the buffer ``name`` with no chunk spanning two notes, then ``/bank.keys``.
    """

    name: str
    pitches: list[int]
    audio: np.ndarray

    def deliver(self, out: Outlet) -> None:
        """Send the bank in the client's delivery mode (see the class docstring)."""
        audio, sr = self.audio, self.sample_rate
        notes, frames = audio.shape
        out.reply("/bank.begin", self.name, frames, sr, *self.pitches)
        if out.mode == "file":
            firsts = range(0, notes, protocol.BANK_CHANNELS)
            groups = [audio[f:f + protocol.BANK_CHANNELS] for f in firsts]
            paths = out.cache.write_all([(self.name, g.T) for g in groups], sr)
            for first, group, path in zip(firsts, groups, paths, strict=True):
                out.reply("/bank.file", self.name, str(path), first, len(group))
        elif out.mode == "stream":
            stream(out.send, out.session, self.name, audio, sr, out.ack_timeout, out.ack_tries,
                   out.cancelled, segment=frames)
        else:
            raise DeliveryError(f"a bank needs file or stream delivery, not {out.mode}")
        out.reply("/bank.keys", self.name, *nearest_keys(self.pitches))
