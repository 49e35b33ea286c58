"""The OSC server: a UDP receiver that never blocks, one generation worker, one delivery thread.

Threads:

- receiver: reads datagrams, checks the source, parses, finds the sender's session
  (:class:`~ganspace_server.sessions.SessionTable`), validates every message against
  :mod:`ganspace_server.protocol` and hands it to its handler (:mod:`ganspace_server.handlers`),
  which answers at once or submits a job (never waits for generation); about twice a second it
  also keeps house: drops the waiting jobs of clients silent for ``client_timeout``, expires
  sessions idle for ``session_idle`` and logs the counts of repeated warnings;
- worker: runs jobs one at a time on the model's device (generation, hallucination), taking them
  fairly across clients (:class:`~ganspace_server.jobs.JobQueue`); it runs at most
  :data:`READY_MAX` jobs ahead of delivery, so finished buffers never pile up in memory;
- delivery: sends each job's buffers (file, stream or play) and its ``/done`` or ``/fail``, in
  order, then answers ``/sync`` requests that were waiting for it;
- loader (while a ``/model.load`` or ``/directions.load`` runs, see
  :mod:`ganspace_server.handlers.model`): reads files; the old model keeps serving until the new
  one is swapped in.

This module is transport, dispatch, the job queue, the worker and delivery; what each command does
is in its handler, the sessions' bound and expiry in :mod:`ganspace_server.sessions`. The methods
in "for handlers" below are what a handler may use.
"""

from __future__ import annotations

import itertools
import logging
import queue
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ganspace.engine.model import GANSynthModel, default_pitch
from ganspace.errors import GanspaceError, InputError
from ganspace.space.directions import Directions
from ganspace_server import delivery, oscwire
from ganspace_server.config import ServerConfig
from ganspace_server.guard import PathGuard, RateLimitedLog, SourceFilter
from ganspace_server.handlers.registry import HANDLERS
from ganspace_server.hosts import is_loopback
from ganspace_server.jobs import Busy, Job, JobQueue, JobTiming, Result
from ganspace_server.schema import ProtocolError, Request
from ganspace_server.session import Address, Session
from ganspace_server.sessions import SessionTable
from ganspace_server.validator import validate

log = logging.getLogger("ganspace_server")

FAIL_CMD_MAX = 128
READY_MAX = 2  #: finished jobs waiting for the delivery thread (the worker waits beyond that)
HOUSEKEEPING_PERIOD = 0.5  #: seconds between checks for silent clients and idle sessions
QUIET_REASONS = ("superseded", "cancelled")  #: /fail reasons that are normal, logged at debug
DROPPED = "dropped"  #: first word of the /fail reason of a gone client's jobs (logged once)


@dataclass(frozen=True)
class ModelState:
    """What every client plays: the model, its name and the directions (or None). Replaced as a
    whole (``dataclasses.replace``) when a load finishes, so a job keeps the one it started with."""

    model: GANSynthModel
    name: str
    directions: Directions | None


@dataclass
class _Outcome:
    job: Job
    result: Result | None
    reason: str
    started: float
    queued: float
    generate: float


class Server:
    """The GANSpaceSynth OSC server (see the module docstring and ``docs/protocol.md``).

    Use as a context manager or call :meth:`start` and :meth:`close`.

    Attributes:
        config: how it runs.
        state: the model and directions clients play (handlers swap it after a load).
        paths: resolves client-given paths inside the model roots.
        loading: held while a model or directions load runs (one at a time).
        timings: the last 1000 finished jobs' timings.
        dropped: jobs dropped because their client was gone (silent or unreachable).
    """

    def __init__(self, model: GANSynthModel, config: ServerConfig | None = None,
                 model_name: str = "model", directions: Directions | None = None) -> None:
        self.config = config or ServerConfig()
        if not is_loopback(self.config.host) and not self.config.allow:
            raise InputError(f"listening on {self.config.host} lets other machines play this "
                             "server: name the networks allowed with --allow CIDR ...")
        if directions is not None:
            directions.check_compatible(model)
        self.state = ModelState(model, model_name, directions)
        self.paths = PathGuard(self.config.model_roots)
        self.loading = threading.Lock()
        self.timings: deque[JobTiming] = deque(maxlen=1000)
        self.dropped = 0
        self._sources = SourceFilter(self.config.allow)
        self._cache = delivery.FileCache(self.config.cache_dir, self.config.cache_bytes)
        self._queue = JobQueue(self.config.client_jobs, self.config.max_jobs)
        self._outbox: queue.Queue[_Outcome | None] = queue.Queue(READY_MAX)
        self._sessions = SessionTable(self.config, lambda sender: Session(
            sender, sender, default_pitch(self.state.model.pitches)))
        self._counts_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._stop = threading.Event()
        self._quit = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sock: socket.socket | None = None
        self._warn = RateLimitedLog(log)
        self._drop = RateLimitedLog(log, per_second=1.0, burst=5)

    # ---- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Bind the socket and start the threads."""
        family, _, _, _, sockaddr = socket.getaddrinfo(
            self.config.host, self.config.port, type=socket.SOCK_DGRAM)[0]
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2**20)
        sock.bind(sockaddr)
        sock.settimeout(0.1)
        self._sock = sock
        for name, target in (("osc-receiver", self._receive_loop),
                             ("generation-worker", self._work_loop),
                             ("delivery", self._deliver_loop)):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        log.info("listening on udp %s:%d", *self.address)

    @property
    def address(self) -> Address:
        """(host, port) the server listens on."""
        if self._sock is None:
            raise RuntimeError("server not started")
        host, port = self._sock.getsockname()[:2]
        return host, port

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a client sent /quit (with --allow-quit); False on timeout."""
        return self._quit.wait(timeout)

    def close(self) -> None:
        """Stop the threads, close the socket and delete the delivered files."""
        self._stop.set()
        self._queue.close()
        self._outbox.put(None)  # the delivery thread drains the outbox, so this never hangs
        for t in self._threads:
            t.join(timeout=5)
        if self._sock is not None:
            self._sock.close()
        self._cache.clear()

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- for handlers: answering ----------------------------------------------------------------
    def send(self, data: bytes, to: Address) -> None:
        """Send one datagram (a failed send is logged, never raised)."""
        if self._sock is None:
            return
        try:
            self._sock.sendto(data, to)
        except OSError as exc:  # unreachable client, closed port: never fatal
            self._warn.warning("cannot send to %s:%d: %s", to[0], to[1], exc)

    def reply(self, s: Session, address: str, *args: int | float | str) -> None:
        """Send the client one message (to its /notify port)."""
        self.send(oscwire.encode(address, *args), s.reply_to)

    def done(self, s: Session, cmd: str, *values: int | float | str) -> None:
        """Answer ``/done <cmd> values...``."""
        self.reply(s, "/done", cmd, *values)

    def fail(self, s: Session, cmd: str, reason: str) -> None:
        """Answer ``/fail <cmd> <reason>``."""
        self._fail_to(s.reply_to, cmd, reason)

    def synced(self, s: Session, ids: list[int]) -> None:
        """Answer the /sync requests ``ids`` (from :meth:`Session.end`)."""
        for i in ids:
            self.reply(s, "/synced", i)

    def _fail_to(self, to: Address, cmd: str, reason: str, quiet: bool = False) -> None:
        cmd = cmd[:FAIL_CMD_MAX]
        if quiet or reason in QUIET_REASONS:  # normal during slider sweeps, or logged once
            log.debug("%s:%d %s %s", to[0], to[1], cmd, reason)
        else:
            self._warn.warning("%s:%d %s failed: %s", to[0], to[1], cmd, reason)
        self.send(oscwire.encode("/fail", cmd, reason), to)

    # ---- for handlers: server state -------------------------------------------------------------
    def sessions(self) -> list[Session]:
        """Every client's session."""
        return self._sessions.all()

    @property
    def expired(self) -> int:
        """Sessions that expired or were evicted."""
        return self._sessions.expired

    def jobs_alive(self, s: Session | None = None) -> int:
        """Jobs waiting, running or being delivered (of client ``s``, or of all)."""
        return len(self._queue) if s is None else self._queue.alive(s)

    def request_quit(self) -> None:
        """Wake :meth:`wait` (a client sent /quit)."""
        self._quit.set()

    def next_id(self) -> int:
        """A fresh job or load id (exact as a Pd float)."""
        return next(self._ids) % 16_777_215 + 1

    # ---- for handlers: jobs ---------------------------------------------------------------------
    def submit(self, s: Session, r: Request, run: Callable[[Job], Result], total: int = 0) -> None:
        """Queue a job for the worker: ``run`` makes the buffers, then they are delivered in the
        client's delivery mode and ``/done`` answered. ``total`` > 0 sends /progress.

        Raises:
            InputError: ``busy`` (this client's jobs, or all jobs, are at their bound).
        """
        job = Job(self.next_id(), s, r.command.address, run, s.delivery, total, r.tag)
        try:
            dropped = self._queue.submit(job)
        except Busy as exc:
            raise InputError(str(exc)) from None
        s.begin(job.id)
        for old in dropped:
            self.fail(old.session, old.cmd, "superseded")
            self.synced(old.session, old.session.end(old.id))

    def cancel(self, s: Session, job_id: int) -> int:
        """Stop this client's jobs (``job_id`` 0: all); waiting ones are answered at once.
        Returns how many were stopped."""
        removed, count = self._queue.cancel(s, job_id)
        for job in removed:
            self.fail(s, job.cmd, "cancelled")
            self.synced(s, s.end(job.id))
        return count

    def progress(self, job: Job) -> Callable[[int, int], None]:
        """The job's progress callback: ``/progress <cmd> <job> <done> <total>`` to a subscribed
        client."""
        def progress(done: int, total: int) -> None:
            if job.session.subscribed:
                self.reply(job.session, "/progress", job.cmd, job.id, int(done), int(total))

        return progress

    # ---- receiving and dispatch -----------------------------------------------------------------
    def _receive_loop(self) -> None:
        assert self._sock is not None
        next_check = time.monotonic() + HOUSEKEEPING_PERIOD
        while not self._stop.is_set():
            try:
                data, addr = self._sock.recvfrom(65536)
            except OSError:  # timeout; ICMP errors of earlier sends surface here on Linux
                pass
            else:
                try:
                    self._datagram(data, (addr[0], addr[1]))
                except Exception:  # the receiver never dies
                    self._warn.warning("unexpected error handling a datagram from %s", addr,
                                       exc_info=True)
            now = time.monotonic()
            if now >= next_check:
                next_check = now + HOUSEKEEPING_PERIOD
                try:
                    self._housekeep(now)
                except Exception:
                    self._warn.warning("unexpected error in housekeeping", exc_info=True)

    def _housekeep(self, now: float) -> None:
        """Drop the waiting jobs of silent clients, expire idle sessions, log repeat counts."""
        timeout = self.config.client_timeout
        for s in self._sessions.all():
            if now - s.last_seen >= timeout:
                self._drop_jobs(s, f"{DROPPED}: this client sent nothing for {timeout:g} s")
        self._sessions.expire_idle(now)
        self._warn.flush()
        self._drop.flush()

    def _drop_jobs(self, s: Session, reason: str) -> None:
        """Drop a gone client's waiting jobs: answer each ``/fail <cmd> <reason>``, log once."""
        jobs = self._queue.drop(s)
        if not jobs:
            return
        self._count_dropped(len(jobs))
        self._warn.warning("%s:%d %s (%d waiting jobs)", s.sender[0], s.sender[1], reason,
                           len(jobs))
        for job in jobs:
            self._fail_to(s.reply_to, job.cmd, reason, quiet=True)
            self.synced(s, s.end(job.id))

    def _count_dropped(self, n: int) -> None:
        with self._counts_lock:
            self.dropped += n

    def _datagram(self, data: bytes, sender: Address) -> None:
        if not self._sources.allows(sender[0]):
            self._drop.warning("dropped a packet from %s (not in --allow)", sender[0])
            return
        try:
            messages = list(oscwire.parse(data))
        except oscwire.WireError as exc:
            address = oscwire.read_address(data)
            s = self._sessions.get(sender)
            if address is None:
                self._warn.warning("%s:%d sent a datagram that is not OSC (%s)", sender[0],
                                   sender[1], exc)
                return
            self._fail_to(s.reply_to if s else sender, address, str(exc))
            return
        for address, args in messages:
            self._message(address, args, sender)

    def _session(self, sender: Address, address: str) -> Session | None:
        """The sender's session (new if needed), marked as just seen; None (after answering
        ``/fail``) when the sender's session expired and this is not ``/notify``, or when no
        session can be opened."""
        got = self._sessions.enter(sender, address, time.monotonic())
        if not isinstance(got, Session):
            self._fail_to(got[0], address, got[1])
            return None
        if got.gone:  # it speaks again: deliver to it again
            log.info("%s:%d is back", sender[0], sender[1])
            got.gone = ""
        return got

    def _message(self, address: str, args: list[Any], sender: Address) -> None:
        s = self._session(sender, address)
        if s is None:
            return
        with s.lock:
            tag = s.tag
            if address != "/buffer.ack":  # acks of a stream may arrive between /latest and its job
                s.tag = None
            try:
                req = validate(address, args, self.state.model)
                req.tag = tag
                HANDLERS[address](self, s, req)
            except (ProtocolError, GanspaceError) as exc:
                self.fail(s, address, str(exc))
            except Exception as exc:
                self._warn.warning("error in %s", address, exc_info=True)
                self.fail(s, address, f"internal error: {exc}")

    # ---- worker and delivery --------------------------------------------------------------------
    def _work_loop(self) -> None:
        while not self._stop.is_set():
            job = self._queue.take(timeout=0.5)
            if job is None:
                continue
            t0 = time.perf_counter()
            queued = t0 - job.queued_at
            result: Result | None = None
            reason = ""
            if job.cancel.is_set():
                reason = job.reason
            else:
                if job.total:
                    self.progress(job)(0, job.total)
                try:
                    result = job.run(job)
                except GanspaceError as exc:
                    reason = job.reason if job.cancel.is_set() else str(exc)
                except Exception as exc:  # out of memory, a library bug: answer, keep serving
                    self._warn.warning("job %s failed", job.cmd, exc_info=True)
                    reason = f"{type(exc).__name__}: {exc}"
            out = _Outcome(job, result, reason, t0, queued, time.perf_counter() - t0)
            while not self._stop.is_set():  # wait while READY_MAX results await delivery
                try:
                    self._outbox.put(out, timeout=0.5)
                    break
                except queue.Full:
                    continue

    def _deliver_loop(self) -> None:
        while True:
            out = self._outbox.get()
            if out is None:
                return
            t0 = time.perf_counter()
            job, s = out.job, out.job.session
            try:
                done = self._complete(out)
            except Exception as exc:  # e.g. a full disk: answer, keep serving
                self._warn.warning("delivery of %s failed", job.cmd, exc_info=True)
                done = f"delivery failed: {exc}"
            label = "" if isinstance(done, str) else str(done[0])
            self.timings.append(JobTiming(job.id, job.cmd, s.sender, label, out.started,
                                          out.queued, out.generate, time.perf_counter() - t0))
            if isinstance(done, str):
                self._fail_to(s.reply_to, job.cmd, done, quiet=done.startswith(DROPPED))
            else:
                self.done(s, job.cmd, *done)
            self._queue.finish(job)
            self.synced(s, s.end(job.id))
            if s.gone:
                self._drop_jobs(s, f"{DROPPED}: {s.gone}")

    def _complete(self, out: _Outcome) -> tuple[int | float | str, ...] | str:
        """Deliver a finished job's buffers; the values of its ``/done``, or the reason of its
        ``/fail``."""
        job, s = out.job, out.job.session
        if out.result is None:
            return out.reason
        if job.cancel.is_set():
            return job.reason
        if s.gone:
            self._count_dropped(1)
            return f"{DROPPED}: {s.gone}"
        try:
            self._deliver(job, out.result)
        except delivery.DeliveryError as exc:
            if job.cancel.is_set():  # superseded or cancelled while streaming
                return job.reason
            if job.delivery == "stream":  # it stopped acking
                s.gone = "this client stopped acknowledging stream chunks"
            return str(exc)
        return out.result.done

    def _deliver(self, job: Job, result: Result) -> None:
        s, sr = job.session, result.sample_rate
        if isinstance(result, delivery.OwnDelivery):  # e.g. a /bank: many notes, one message
            result.deliver(delivery.Outlet(self.send, s, job.delivery, self._cache,
                                           self.config.ack_timeout, self.config.ack_tries,
                                           job.cancel.is_set))
            return
        if job.delivery == "play":
            delivery.play(np.concatenate([a for _, a in result.buffers]), sr)
            return
        if job.delivery == "file":
            paths = self._cache.write_all(result.buffers, sr)
            for (name, audio), path in zip(result.buffers, paths, strict=True):
                self.reply(s, "/buffer.file", name, str(path), len(audio), sr)
            return
        for name, audio in result.buffers:
            delivery.stream(self.send, s, name, audio, sr, self.config.ack_timeout,
                            self.config.ack_tries, job.cancel.is_set)
