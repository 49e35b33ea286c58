"""A Python client for the GANSpaceSynth OSC server.

>>> with Client("127.0.0.1", 57130, delivery="stream") as c:    # doctest: +SKIP
...     c.random_z(0, seed=1)
...     audio = c.synth("snd", pitch=40)     # float32 [64000]

Every method sends one command and waits for its ``/done`` (or reply), raising
:class:`~ganspace_server.connection.ServerError` on ``/fail`` and :class:`TimeoutError` when
nothing comes back in time. Buffers arrive in the client's delivery mode (``file``: read from the
server's cache folder, so both must share a disk; ``stream``: chunks over OSC, acknowledged by a
receiver thread). One command runs at a time per client (calls from several threads are
serialised). The socket, the receiver thread and waiting for answers are
:class:`~ganspace_server.connection.Connection`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ganspace_server import protocol
from ganspace_server.connection import Bank, Connection


@dataclass(frozen=True)
class Status:
    """Fields of ``/status.reply``."""

    model: str
    pitches: int
    min_pitch: int
    max_pitch: int
    latent: int
    k: int
    layer: str
    device: str
    queue: int
    version: str


@dataclass(frozen=True)
class HalluState:
    """The HALLU sequencer as ``/hallu.state`` reports it."""

    index: int
    count: int
    settings: dict[str, float]
    coefficients: np.ndarray


class Client(Connection):
    """Talks to one server over UDP from its own socket (replies come back to it, so no
    ``/notify`` is needed; ``subscribe`` sends ``/notify <own port> 1`` for events).

    Args:
        host, port: the server.
        delivery: ``file``, ``stream`` or ``play`` (sent as ``/delivery`` at once).
        timeout: default seconds to wait for an answer.
        subscribe: receive ``/progress``, ``/status.reply`` and ``/directions.labels.reply``
            events.
        on_event: called from the receiver thread with every ``/progress`` message.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = protocol.DEFAULT_PORT,
                 delivery: str = "file", timeout: float = 60.0, subscribe: bool = False,
                 on_event: Callable[[str, list[Any]], None] | None = None) -> None:
        super().__init__(host, port, timeout, on_event)
        if subscribe:
            self.call("/notify", self._sock.getsockname()[1], 1)
        self.set_delivery(delivery)

    # ---- session ----------------------------------------------------------------------------
    def set_delivery(self, mode: str) -> None:
        """``file``, ``stream`` or ``play``."""
        self.call("/delivery", mode)
        self.delivery = mode

    def status(self) -> Status:
        """The server's state."""
        v = self.query("/status", "/status.reply")
        return Status(str(v[0]), int(v[1]), int(v[2]), int(v[3]), int(v[4]), int(v[5]), str(v[6]),
                      str(v[7]), int(v[8]), str(v[9]))

    def version(self) -> tuple[str, str, int]:
        """(program, version, protocol version)."""
        v = self.query("/version", "/version.reply")
        return str(v[0]), str(v[1]), int(v[2])

    def sync(self, ident: int = 1, timeout: float | None = None) -> None:
        """Wait until every earlier command of this client has finished."""
        self.query("/sync", "/synced", ident, timeout=timeout)

    def cancel(self, job: int = 0) -> int:
        """Cancel one job (by id) or all of this client's; return how many were stopped."""
        return int(self.call("/cancel", job)[0])

    # ---- model ------------------------------------------------------------------------------
    def load_model(self, path: str, timeout: float | None = None) -> tuple[str, int, int]:
        """Load a model inside the server's model roots: (name, audio_length, sample_rate)."""
        v = self.call("/model.load", path, timeout=timeout)
        return str(v[0]), int(v[1]), int(v[2])

    def load_directions(self, path: str, timeout: float | None = None) -> tuple[int, str]:
        """Load a directions file: (K, layer)."""
        v = self.call("/directions.load", path, timeout=timeout)
        return int(v[0]), str(v[1])

    def labels(self) -> dict[int, str]:
        """The loaded directions' measured labels: direction index -> label (words joined by
        ``_``); components nobody measured are left out."""
        v = self.query("/directions.labels", "/directions.labels.reply")
        return {int(v[i]): str(v[i + 1]) for i in range(1, 1 + 2 * int(v[0]), 2)}

    def layers(self) -> list[str]:
        """Generator layer names."""
        return [str(x) for x in self.call("/model.layers")]

    def pitches(self) -> list[int]:
        """Every MIDI pitch the model knows, sorted."""
        return [int(x) for x in self.call("/model.pitches")]

    # ---- latents, coefficients, pitch -------------------------------------------------------
    def random_z(self, slot: int, seed: int | None = None) -> None:
        """Fill a z slot with a random latent."""
        self.call("/z.random", slot, *(() if seed is None else (seed,)))

    def set_z(self, slot: int, z: Sequence[float] | np.ndarray) -> None:
        """Set a z slot."""
        self.call("/z.set", slot, *(float(x) for x in np.asarray(z, np.float32)))

    def get_z(self, slot: int) -> np.ndarray:
        """Read a z slot."""
        v = self.query("/z.get", "/z.reply", slot)
        return np.array(v[1:], np.float32)

    def slerp_z(self, dst: int, a: int, b: int, t: float) -> None:
        """Slot dst := slerp(slot a, slot b, t)."""
        self.call("/z.slerp", dst, a, b, float(t))

    def set_coefficients(self, values: Sequence[float] | np.ndarray, start: int = 0) -> None:
        """Set consecutive coefficients of the current step from ``start``."""
        vals = [float(x) for x in np.asarray(values, np.float32).reshape(-1)]
        self.call("/coef.setn", start, len(vals), *vals)

    def set_coefficient(self, values: Mapping[int, float]) -> None:
        """Set coefficients by index."""
        args: list[int | float] = []
        for i, v in values.items():
            args += [int(i), float(v)]
        self.call("/coef.set", *args)

    def zero_coefficients(self) -> None:
        """Zero the current step."""
        self.call("/coef.zero")

    def get_coefficients(self, start: int = 0, count: int = protocol.MIRROR_MIN) -> np.ndarray:
        """Read coefficients of the current step."""
        v = self.query("/coef.get", "/coef.reply", start, count)
        return np.array(v[1:], np.float32)

    def set_pitch(self, pitch: int) -> None:
        """This client's current pitch."""
        self.call("/pitch", pitch)

    # ---- synthesis --------------------------------------------------------------------------
    def synth(self, buffer: str = "snd", pitch: int | None = None, zslot: int = 0,
              timeout: float | None = None) -> np.ndarray:
        """One note from a z slot (current coefficients applied when directions are loaded)."""
        if pitch is None and zslot:
            raise ValueError("give a pitch together with a z slot other than 0")
        args: tuple[int | str, ...] = (buffer,) if pitch is None else (buffer, pitch, zslot)
        return self._job("/synth", [buffer], *args, timeout=timeout)[1][0]

    def synth_noz(self, buffer: str = "snd", pitch: int | None = None,
                  timeout: float | None = None) -> np.ndarray:
        """One note from the directions' mean plus the current coefficients."""
        args = (buffer,) if pitch is None else (buffer, pitch)
        return self._job("/synth.noz", [buffer], *args, timeout=timeout)[1][0]

    def synth_batch(self, prefix: str, notes: Sequence[tuple[int, int]],
                    timeout: float | None = None) -> list[np.ndarray]:
        """Several notes in one batch: ``notes`` are (zslot, pitch) pairs."""
        args: list[int | str] = [prefix]
        for slot, pitch in notes:
            args += [int(slot), int(pitch)]
        names = [f"{prefix}{i}" for i in range(len(notes))]
        return self._job("/synth.batch", names, *args, timeout=timeout)[1]

    def hallucinate(self, buffer: str = "hallu", timeout: float | None = None) -> np.ndarray:
        """Coefficient-space hallucination through the HALLU steps."""
        return self._job("/hallu", [buffer], buffer, timeout=timeout)[1][0]

    def hallucinate_z(self, buffer: str, keypoints: int, steps: int, seed: int | None = None,
                      timeout: float | None = None) -> np.ndarray:
        """z-space hallucination with random keypoints."""
        extra = () if seed is None else (seed,)
        return self._job("/hallu.z", [buffer], buffer, keypoints, steps, *extra,
                         timeout=timeout)[1][0]

    # ---- banks ------------------------------------------------------------------------------
    def set_bank_source(self, zslot: int) -> None:
        """The z slot /bank renders, or -1 for noz mode."""
        self.call("/bank.source", zslot)

    def bank(self, name: str = "bank", lo: int = 0, hi: int = 127,
             timeout: float | None = None) -> Bank:
        """The current timbre at every model pitch in lo..hi, rendered in one job."""
        return self._bank_job(name, lo, hi, timeout)

    # ---- presets ----------------------------------------------------------------------------
    def save_preset(self, name: str) -> None:
        """Save this client's state as preset ``name`` on the server."""
        self.call("/preset.save", name)

    def load_preset(self, name: str, what: str = "all") -> tuple[int, int]:
        """Load preset ``name`` (``all``, or ``coef``: only the coefficients); returns the
        client's pitch and bank source after loading."""
        with self._call_lock:
            self.send("/preset.load", name, what)
            v = self.answer("/preset.load")
        self._drop("/hallu.")
        return int(v[2]), int(v[3])

    def presets(self) -> list[str]:
        """The presets on the server."""
        return [str(x) for x in self.call("/preset.list")]

    # ---- HALLU sequencer --------------------------------------------------------------------
    def hallu_rand(self, range_: float = protocol.RAND_RANGE, count: int = protocol.RAND_COUNT,
                   seed: int | None = None) -> None:
        """Set the current step to random coefficients (seeded: reproducible)."""
        with self._call_lock:
            self.send("/hallu.rand", float(range_), count, *(() if seed is None else (seed,)))
            self.answer("/hallu.rand")
        self._drop("/hallu.")

    def hallu(self, word: str) -> tuple[int, int]:
        """``add``, ``remove``, ``next`` or ``prev``: returns (index, count) of the new position."""
        address = f"/hallu.{word}"
        with self._call_lock:
            self.send(address)
            self.answer(address)
            _, step = self.expect(lambda m: m[0] == "/hallu.step", timeout=1.0)
        self._drop("/hallu.coef")
        return int(step[0]), int(step[1])

    def hallu_setting(self, name: str, value: float) -> None:
        """Set one of interp, spacing, trim, attack, sustain, release."""
        self.call(f"/hallu.{name}", value)
        self._drop("/hallu.setting")

    def hallu_state(self) -> HalluState:
        """The whole sequencer state."""
        with self._call_lock:
            self._drop("/hallu.")
            self.send("/hallu.state")
            self.answer("/hallu.state")
            msgs = self._drop("/hallu.")
        step = next(a for addr, a in msgs if addr == "/hallu.step")
        settings = {str(a[0]): float(a[1]) for addr, a in msgs if addr == "/hallu.setting"}
        coefs = dict((int(a[0]), float(a[1])) for addr, a in msgs if addr == "/hallu.coef")
        vec = np.array([coefs[i] for i in range(len(coefs))], np.float32)
        return HalluState(int(step[0]), int(step[1]), settings, vec)
