"""The Python client's connection to a GANSpaceSynth OSC server: one UDP socket, a receiver
thread that acknowledges stream chunks and reassembles delivered buffers and banks, and waiting
for answers (:class:`Connection`). :class:`~ganspace_server.client.Client` adds one method per
command on top.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import soundfile as sf

from ganspace_server import oscwire, protocol
from ganspace_server.hosts import is_loopback

Message = tuple[str, list[Any]]


class ServerError(RuntimeError):
    """The server answered ``/fail <cmd> <reason>``."""

    def __init__(self, cmd: str, reason: str) -> None:
        super().__init__(f"{cmd}: {reason}")
        self.cmd = cmd
        self.reason = reason


@dataclass
class Bank:
    """A bank as ``/bank`` delivered it.

    Attributes:
        pitches: the rendered MIDI pitches, sorted.
        audio: float32 [len(pitches), frames], note i at pitch ``pitches[i]``.
        sample_rate: Hz.
        keys: for every MIDI key 0..127, the rendered pitch it plays (``/bank.keys``).
    """

    pitches: list[int]
    audio: np.ndarray
    sample_rate: int
    keys: list[int]


class _Buffer:
    def __init__(self, frames: int, sample_rate: int) -> None:
        self.data = np.zeros(frames, np.float32)
        self.sample_rate = sample_rate


class Connection:
    """One UDP socket talking to one server (replies come back to it, so no ``/notify`` is
    needed). A receiver thread acknowledges stream chunks, reads delivered files at once and
    keeps every other message in an inbox until :meth:`expect` takes it.

    Args:
        host, port: the server.
        timeout: default seconds to wait for an answer.
        on_event: called from the receiver thread with every ``/progress`` message.

    Attributes:
        delivery: the delivery mode buffers arrive in (the server's default ``file`` until
            ``/delivery`` changes it).
        sample_rate: of the last buffer received.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = protocol.DEFAULT_PORT,
                 timeout: float = 60.0,
                 on_event: Callable[[str, list[Any]], None] | None = None) -> None:
        family, _, _, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        self.server: tuple[Any, ...] = tuple(sockaddr)
        self.timeout = timeout
        self.on_event = on_event
        self.delivery = "file"
        self.sample_rate = 16000
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2**20)
        self._sock.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0)
                        if is_loopback(host) else ("", 0))
        self._sock.settimeout(0.1)
        self._inbox: deque[Message] = deque(maxlen=4096)
        self._cond = threading.Condition()
        self._streams: dict[str, _Buffer] = {}
        self._complete: dict[str, np.ndarray] = {}
        self._banks: dict[str, Bank] = {}
        self._call_lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._receive_loop, name="osc-client", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the receiver thread and close the socket."""
        self._closed.set()
        self._thread.join(timeout=2)
        self._sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, address: str, *args: int | float | str) -> None:
        """Send one message without waiting."""
        self._sock.sendto(oscwire.encode(address, *args), self.server)

    def expect(self, match: Callable[[Message], bool], timeout: float | None = None) -> Message:
        """Wait for the first received message ``match`` accepts, remove it from the inbox and
        return it. Raises TimeoutError."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        with self._cond:
            while True:
                for i, msg in enumerate(self._inbox):
                    if match(msg):
                        del self._inbox[i]
                        return msg
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no matching reply from the server")
                self._cond.wait(left)

    def answer(self, cmd: str, timeout: float | None = None) -> list[Any]:
        """Wait for ``/done <cmd>`` (return its values) or ``/fail <cmd>`` (raise)."""
        address, args = self.expect(
            lambda m: m[0] in ("/done", "/fail") and bool(m[1]) and m[1][0] == cmd, timeout)
        if address == "/fail":
            raise ServerError(cmd, str(args[1]) if len(args) > 1 else "")
        return args[1:]

    def drain(self) -> list[Message]:
        """Remove and return every message received but not yet consumed."""
        with self._cond:
            out = list(self._inbox)
            self._inbox.clear()
            return out

    def call(self, address: str, *args: int | float | str,
             timeout: float | None = None) -> list[Any]:
        """Send a command and wait for its ``/done`` values (raise ServerError on ``/fail``)."""
        with self._call_lock:
            self.send(address, *args)
            return self.answer(address, timeout)

    def query(self, address: str, reply: str, *args: int | float | str,
              timeout: float | None = None) -> list[Any]:
        """Send a query and wait for its reply message (or ``/fail``)."""
        with self._call_lock:
            self.send(address, *args)
            got, values = self.expect(
                lambda m: m[0] == reply or (m[0] == "/fail" and m[1][:1] == [address]), timeout)
            if got == "/fail":
                raise ServerError(address, str(values[1]))
            return values

    def _receive_loop(self) -> None:
        while not self._closed.is_set():
            try:
                data, _ = self._sock.recvfrom(65536)
            except TimeoutError:
                continue
            except OSError:
                if self._closed.is_set():
                    return
                continue
            try:
                self._datagram(data)
            except (oscwire.WireError, ValueError, IndexError):
                continue  # not from our server, or damaged: ignore

    def _datagram(self, data: bytes) -> None:
        if data.startswith(b"/buffer.chunk\0"):
            _, head, values = oscwire.decode_floats(data)
            name, offset = str(head[0]), int(head[1])
            buf = self._streams.get(name)
            if buf is not None and 0 <= offset and offset + len(values) <= len(buf.data):
                buf.data[offset:offset + len(values)] = values
                self._sock.sendto(oscwire.encode("/buffer.ack", name, offset), self.server)
            return
        for address, args in oscwire.parse(data):
            if address == "/buffer.begin":
                self._streams[args[0]] = _Buffer(int(args[1]), int(args[2]))
                continue
            if address == "/buffer.end":
                buf = self._streams.pop(args[0], None)
                if buf is not None:
                    with self._cond:
                        self._complete[args[0]] = buf.data
                        self.sample_rate = buf.sample_rate
                continue
            if address == "/buffer.file":  # read at once: the server's cache may recycle it
                audio, _ = sf.read(args[1], dtype="float32", always_2d=False)
                with self._cond:
                    self._complete[args[0]] = audio
                    self.sample_rate = int(args[3])
                continue
            if address == "/bank.begin":
                pitches = [int(p) for p in args[3:]]
                self._banks[args[0]] = Bank(pitches, np.zeros((len(pitches), int(args[1])),
                                                              np.float32), int(args[2]), [])
                continue
            if address == "/bank.file":
                bank = self._banks[args[0]]
                channels, _ = sf.read(args[1], dtype="float32", always_2d=True)
                first = int(args[2])
                bank.audio[first:first + int(args[3])] = channels.T
                continue
            if address == "/bank.keys":
                self._banks[args[0]].keys = [int(p) for p in args[1:]]
                continue
            if address == "/progress" and self.on_event is not None:
                self.on_event(address, args)
            with self._cond:
                self._inbox.append((address, args))
                self._cond.notify_all()

    def buffer(self, name: str) -> np.ndarray:
        """A buffer delivered since the last call for it (stream: received; file: read when
        its /buffer.file arrived)."""
        with self._cond:
            data = self._complete.pop(name, None)
        if data is not None:
            return data
        raise KeyError(f"buffer {name} was not delivered (delivery mode play?)")

    def _job(self, address: str, names: Sequence[str], *args: int | float | str,
             timeout: float | None) -> tuple[list[Any], list[np.ndarray]]:
        """Send a job and wait for its ``/done``: its values and the buffers ``names`` (none
        in play delivery)."""
        with self._call_lock:
            with self._cond:
                for n in names:
                    self._complete.pop(n, None)
            self.send(address, *args)
            values = self.answer(address, timeout)
        if self.delivery == "play":
            return values, []
        return values, [self.buffer(n) for n in names]

    def _bank_job(self, name: str, lo: int, hi: int, timeout: float | None) -> Bank:
        """Send ``/bank`` and collect the delivered bank."""
        with self._call_lock:
            with self._cond:
                self._banks.pop(name, None)
                self._complete.pop(name, None)
            self.send("/bank", name, lo, hi)
            self.answer("/bank", timeout)
        bank = self._banks.pop(name)
        if self.delivery == "stream":
            bank.audio = self.buffer(name).reshape(bank.audio.shape)
        return bank

    def _drop(self, prefix: str) -> list[Message]:
        """Remove the received messages whose address starts with ``prefix``; return them."""
        with self._cond:
            dropped = [m for m in self._inbox if m[0].startswith(prefix)]
            keep = [m for m in self._inbox if not m[0].startswith(prefix)]
            self._inbox.clear()
            self._inbox.extend(keep)
            return dropped
