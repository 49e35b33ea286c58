"""Per-client state: reply address, delivery mode, z slots, HALLU steps and settings, pending work.

A client is one (host, port) sender. Its current HALLU step *is* the coefficient vector that
``/synth`` applies, so a patch without a sequencer simply works on step 0.

Everything a client stores lives on its :class:`Session` object: when the session expires (idle
too long, or evicted for a new client) the server forgets the object, and with it all of the
client's state.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ganspace.engine.model import default_pitch
from ganspace.errors import InputError
from ganspace_server import protocol

Address = tuple[str, int]

DEFAULT_SETTINGS: dict[str, float] = {
    "interp": 4, "spacing": 0.5, "trim": 0.0, "attack": 0.01, "sustain": 1.0, "release": 1.0,
}


@dataclass
class _Sync:
    ident: int
    waiting: set[int]


@dataclass
class Session:
    """One client's state (guarded by :attr:`lock`; the receiver thread and the worker threads
    both touch it).

    Besides the musical state: ``last_seen`` (``time.monotonic()`` of its last message),
    ``served`` (the job queue's count when a job of this client last started; fair scheduling)
    and ``gone`` (why the server believes the client is gone, e.g. its stream stopped acking;
    "" while it is reachable; any message from it clears it).
    """

    sender: Address
    reply_to: Address
    pitch: int
    subscribed: bool = False
    delivery: str = "file"
    z: dict[int, np.ndarray] = field(default_factory=dict)
    steps: list[np.ndarray] = field(
        default_factory=lambda: [np.zeros(protocol.COEF_MAX, np.float32)])
    current: int = 0
    settings: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_SETTINGS))
    highest_set: int = -1
    bank_zslot: int = 0  # the z slot /bank renders, -1: noz mode
    tag: str | None = None
    last_seen: float = field(default_factory=time.monotonic)
    served: int = 0
    gone: str = ""
    lock: threading.RLock = field(default_factory=threading.RLock)
    _pending: set[int] = field(default_factory=set)
    _syncs: list[_Sync] = field(default_factory=list)
    # stream delivery: offsets acknowledged for the buffer being streamed ("" when none)
    streaming: str = ""
    acked: set[int] = field(default_factory=set)
    ack_event: threading.Condition = field(default_factory=threading.Condition)

    # ---- coefficients / HALLU -------------------------------------------------------------------
    @property
    def coefficients(self) -> np.ndarray:
        """The current step's coefficient vector [COEF_MAX] (mutable)."""
        return self.steps[self.current]

    def track_highest_set(self, index: int) -> None:
        """Remember the highest coefficient index this client has set (for mirroring)."""
        self.highest_set = max(self.highest_set, index)

    def mirror_count(self) -> int:
        """How many coefficients /hallu.coef mirrors."""
        return max(protocol.MIRROR_MIN, self.highest_set + 1)

    def add_step(self) -> None:
        """Insert a copy of the current step after it and go there."""
        if len(self.steps) >= protocol.MAX_STEPS:
            raise InputError(f"at most {protocol.MAX_STEPS} steps")
        self.steps.insert(self.current + 1, self.coefficients.copy())
        self.current += 1

    def remove_step(self) -> None:
        """Remove the current step (the last step left is zeroed instead)."""
        if len(self.steps) == 1:
            self.steps[0][:] = 0
            return
        del self.steps[self.current]
        self.current = min(self.current, len(self.steps) - 1)

    def move(self, delta: int) -> None:
        """Go to the next (+1) or previous (-1) step, staying inside the list."""
        self.current = min(max(self.current + delta, 0), len(self.steps) - 1)

    # ---- pending work and /sync -----------------------------------------------------------------
    def begin(self, op: int) -> None:
        """Register an unfinished command (a job or a load)."""
        with self.lock:
            self._pending.add(op)

    def end(self, op: int) -> list[int]:
        """Mark a command finished; return the /sync ids that may now be answered, in order."""
        with self.lock:
            self._pending.discard(op)
            for s in self._syncs:
                s.waiting.discard(op)
            ready: list[int] = []
            while self._syncs and not self._syncs[0].waiting:
                ready.append(self._syncs.pop(0).ident)
            return ready

    def sync(self, ident: int) -> bool:
        """Register a /sync; True when nothing is pending (answer at once).

        Raises:
            InputError: :data:`~ganspace_server.protocol.MAX_SYNCS` are already waiting.
        """
        with self.lock:
            if not self._pending and not self._syncs:
                return True
            if len(self._syncs) >= protocol.MAX_SYNCS:
                raise InputError(f"{protocol.MAX_SYNCS} /sync requests are already waiting")
            self._syncs.append(_Sync(ident, set(self._pending)))
            return False

    @property
    def busy(self) -> bool:
        """Whether commands of this client are unfinished."""
        with self.lock:
            return bool(self._pending)

    # ---- stream acknowledgements ----------------------------------------------------------------
    def start_stream(self, buffer: str) -> None:
        """Expect acks for ``buffer`` from now on."""
        with self.ack_event:
            self.streaming = buffer
            self.acked = set()

    def ack(self, buffer: str, offset: int) -> None:
        """Record a /buffer.ack (ignored unless that buffer is being streamed)."""
        with self.ack_event:
            if buffer == self.streaming:
                self.acked.add(offset)
                self.ack_event.notify_all()

    def wait_acks(self, offsets: set[int], timeout: float) -> set[int]:
        """Wait until one of ``offsets`` is acknowledged, or the timeout; return the acked
        offsets so far."""
        with self.ack_event:
            self.ack_event.wait_for(lambda: bool(offsets & self.acked), timeout)
            return set(self.acked)

    def reset_for_model(self, latent_size: int, pitches: Sequence[int]) -> None:
        """Empty z slots of another width and move the pitch into the new model's range."""
        with self.lock:
            self.z = {k: v for k, v in self.z.items() if v.shape[0] == latent_size}
            if self.pitch not in pitches:
                self.pitch = default_pitch(pitches)
