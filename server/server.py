"""The OSC server: a UDP receiver that never blocks, one generation worker, one delivery thread.

Threads:

- receiver: reads datagrams, checks the source, parses, validates every message against
  :mod:`ganspace_server.protocol`, answers state commands at once and queues jobs (never waits
  for generation);
- worker: runs jobs one at a time on the model's device (generation, hallucination);
- delivery: sends each job's buffers (file, stream or play) and its ``/done`` or ``/fail``, in
  order, then answers ``/sync`` requests that were waiting for it;
- loader (while a ``/model.load`` or ``/directions.load`` runs): reads files; the old model keeps
  serving until the new one is swapped in.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ganspace.engine.latent import slerp
from ganspace.engine.model import GANSynthModel, default_pitch
from ganspace.errors import GanspaceError, InputError
from ganspace.formats import load_model
from ganspace.space.directions import Directions, load_directions
from ganspace.space.hallucinate import (
    Envelope,
    check_request,
    coefficient_count,
    hallucinate_coefficients,
    hallucinate_z,
    z_count,
)
from ganspace_server import __version__, delivery, oscwire
from ganspace_server import protocol as P
from ganspace_server.guard import Network, PathGuard, RateLimitedLog, SourceFilter, is_loopback
from ganspace_server.jobs import Busy, Job, JobQueue, Result
from ganspace_server.session import Address, Session

log = logging.getLogger("ganspace_server")

FAIL_CMD_MAX = 128


@dataclass
class ServerConfig:
    """How a :class:`Server` runs.

    Attributes:
        host, port: where to listen (port 0: any free port).
        model_roots: folders ``/model.load`` and ``/directions.load`` may read from.
        cache_dir: folder of delivered WAV files.
        cache_bytes: most bytes kept in ``cache_dir`` (oldest files deleted first).
        allow: networks allowed besides loopback (needed to bind a non-loopback address).
        allow_quit: whether ``/quit`` stops the server.
        ack_timeout: seconds before an unacknowledged chunk is sent again.
        ack_tries: sends of one chunk before the delivery fails.
        session_idle: seconds after which an idle client may be evicted for a new one.
    """

    host: str = "127.0.0.1"
    port: int = P.DEFAULT_PORT
    model_roots: list[Path] = field(default_factory=list)
    cache_dir: Path = field(default_factory=delivery.default_cache_dir)
    cache_bytes: int = 256 * 2**20
    allow: list[Network] = field(default_factory=list)
    allow_quit: bool = False
    ack_timeout: float = 0.25
    ack_tries: int = 5
    session_idle: float = 600.0


@dataclass(frozen=True)
class _State:
    model: GANSynthModel
    name: str
    directions: Directions | None


@dataclass(frozen=True)
class JobTiming:
    """Timing of one finished job (seconds): waiting, generating, delivering."""

    job: int
    cmd: str
    queued: float
    generate: float
    deliver: float


@dataclass
class _Outcome:
    job: Job
    result: Result | None
    reason: str
    queued: float
    generate: float


class Server:
    """The GANSpaceSynth OSC server (see the module docstring and ``docs/protocol.md``).

    Use as a context manager or call :meth:`start` and :meth:`close`.
    """

    def __init__(self, model: GANSynthModel, config: ServerConfig | None = None,
                 model_name: str = "model", directions: Directions | None = None) -> None:
        self.config = config or ServerConfig()
        if not is_loopback(self.config.host) and not self.config.allow:
            raise InputError(f"listening on {self.config.host} lets other machines play this "
                             "server: name the networks allowed with --allow CIDR ...")
        if directions is not None:
            directions.check_compatible(model)
        self._state = _State(model, model_name, directions)
        self._sources = SourceFilter(self.config.allow)
        self._paths = PathGuard(self.config.model_roots)
        self._cache = delivery.FileCache(self.config.cache_dir, self.config.cache_bytes)
        self._queue = JobQueue(P.MAX_QUEUE)
        self._outbox: queue.Queue[_Outcome | None] = queue.Queue()
        self._sessions: dict[Address, Session] = {}
        self._ids = itertools.count(1)
        self._loading = threading.Lock()
        self._stop = threading.Event()
        self._quit = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sock: socket.socket | None = None
        self._warn = RateLimitedLog(log)
        self._drop = RateLimitedLog(log, per_second=1.0, burst=5)
        self.timings: deque[JobTiming] = deque(maxlen=1000)
        self._handlers: dict[str, Callable[[Session, P.Request], None]] = {
            "/notify": self._notify, "/delivery": self._delivery, "/buffer.ack": self._ack,
            "/status": self._status, "/version": self._version, "/sync": self._sync,
            "/latest": self._latest, "/cancel": self._cancel, "/quit": self._quit_cmd,
            "/model.load": self._model_load, "/directions.load": self._directions_load,
            "/model.layers": self._layers, "/model.pitches": self._pitches,
            "/z.random": self._z_random, "/z.set": self._z_set,
            "/z.get": self._z_get, "/z.slerp": self._z_slerp, "/coef.set": self._coef_set,
            "/coef.setn": self._coef_setn, "/coef.zero": self._coef_zero,
            "/coef.get": self._coef_get, "/pitch": self._pitch, "/synth": self._synth,
            "/synth.noz": self._synth_noz, "/synth.batch": self._synth_batch,
            "/hallu": self._hallu, "/hallu.z": self._hallu_z, "/hallu.add": self._hallu_step,
            "/hallu.remove": self._hallu_step, "/hallu.next": self._hallu_step,
            "/hallu.prev": self._hallu_step, "/hallu.state": self._hallu_state,
            **{f"/hallu.{name}": self._hallu_setting for name in P.HALLU_SETTINGS},
        }
        if set(self._handlers) != set(P.COMMANDS):
            raise RuntimeError("protocol table and handlers differ: "
                               f"{sorted(set(self._handlers) ^ set(P.COMMANDS))}")

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
        self._outbox.put(None)
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

    # ---- sending --------------------------------------------------------------------------------
    def _send(self, data: bytes, to: Address) -> None:
        if self._sock is None:
            return
        try:
            self._sock.sendto(data, to)
        except OSError as exc:  # unreachable client, closed port: never fatal
            self._warn.warning("cannot send to %s:%d: %s", to[0], to[1], exc)

    def _reply(self, s: Session, address: str, *args: int | float | str) -> None:
        self._send(oscwire.encode(address, *args), s.reply_to)

    def _done(self, s: Session, cmd: str, *values: int | float | str) -> None:
        self._reply(s, "/done", cmd, *values)

    def _fail_to(self, to: Address, cmd: str, reason: str) -> None:
        cmd = cmd[:FAIL_CMD_MAX]
        if reason in ("superseded", "cancelled"):  # normal during slider sweeps
            log.debug("%s:%d %s %s", to[0], to[1], cmd, reason)
        else:
            self._warn.warning("%s:%d %s failed: %s", to[0], to[1], cmd, reason)
        self._send(oscwire.encode("/fail", cmd, reason), to)

    def _fail(self, s: Session, cmd: str, reason: str) -> None:
        self._fail_to(s.reply_to, cmd, reason)

    def _synced(self, s: Session, ids: list[int]) -> None:
        for i in ids:
            self._reply(s, "/synced", i)

    def _status_args(self) -> tuple[int | str, ...]:
        st = self._state
        m, d = st.model, st.directions
        return (st.name, len(m.pitches), min(m.pitches), max(m.pitches), m.latent_size,
                d.count if d else 0, d.layer if d else "", str(m.device), len(self._queue),
                __version__)

    # ---- receiving ------------------------------------------------------------------------------
    def _receive_loop(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                data, addr = self._sock.recvfrom(65536)
            except TimeoutError:
                continue
            except OSError:  # ICMP errors of earlier sends surface here on Linux
                continue
            try:
                self._datagram(data, (addr[0], addr[1]))
            except Exception:  # the receiver never dies
                log.exception("unexpected error handling a datagram from %s", addr)

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
                self._warn.warning("%s:%d sent %d bytes that are not OSC (%s)", sender[0],
                                   sender[1], len(data), exc)
                return
            self._fail_to(s.reply_to if s else sender, address, str(exc))
            return
        for address, args in messages:
            self._message(address, args, sender)

    def _session(self, sender: Address) -> Session | None:
        s = self._sessions.get(sender)
        if s is None:
            if len(self._sessions) >= P.MAX_CLIENTS:
                now = time.monotonic()
                idle = [x for x in self._sessions.values()
                        if now - x.last_seen > self.config.session_idle and not x.busy]
                if not idle:
                    return None
                oldest = min(idle, key=lambda x: x.last_seen)
                del self._sessions[oldest.sender]
            s = Session(sender, sender, default_pitch(self._state.model.pitches))
            self._sessions[sender] = s
        s.last_seen = time.monotonic()
        return s

    def _message(self, address: str, args: list[Any], sender: Address) -> None:
        s = self._session(sender)
        if s is None:
            self._fail_to(sender, address, f"too many clients (at most {P.MAX_CLIENTS})")
            return
        with s.lock:
            tag = s.tag
            if address != "/buffer.ack":  # acks of a stream may arrive between /latest and its job
                s.tag = None
            try:
                req = P.validate(address, args, self._state.model)
                req.tag = tag
                self._handlers[address](s, req)
            except (P.ProtocolError, GanspaceError) as exc:
                self._fail(s, address, str(exc))
            except Exception as exc:
                log.exception("error in %s", address)
                self._fail(s, address, f"internal error: {exc}")

    # ---- session commands -----------------------------------------------------------------------
    def _notify(self, s: Session, r: P.Request) -> None:
        s.reply_to = (s.sender[0], r["port"])
        s.subscribed = bool(r["on"])
        self._done(s, "/notify", r["port"])

    def _delivery(self, s: Session, r: P.Request) -> None:
        s.delivery = r["mode"]
        self._done(s, "/delivery", r["mode"])

    def _ack(self, s: Session, r: P.Request) -> None:
        s.ack(r["buffer"], r["offset"])

    def _status(self, s: Session, r: P.Request) -> None:
        self._reply(s, "/status.reply", *self._status_args())

    def _version(self, s: Session, r: P.Request) -> None:
        self._reply(s, "/version.reply", "ganspacesynth", __version__, P.PROTOCOL_VERSION)

    def _sync(self, s: Session, r: P.Request) -> None:
        if s.sync(r["id"]):
            self._reply(s, "/synced", r["id"])

    def _latest(self, s: Session, r: P.Request) -> None:
        s.tag = r["tag"]

    def _cancel(self, s: Session, r: P.Request) -> None:
        removed, count = self._queue.cancel(s, r["job"])
        for job in removed:
            self._fail(s, job.cmd, "cancelled")
            self._synced(s, s.end(job.id))
        self._done(s, "/cancel", count)

    def _quit_cmd(self, s: Session, r: P.Request) -> None:
        if not self.config.allow_quit:
            raise InputError("not allowed: start the server with --allow-quit")
        self._done(s, "/quit")
        self._quit.set()

    # ---- model commands -------------------------------------------------------------------------
    def _background(self, s: Session, cmd: str, work: Callable[[], tuple[Any, ...]]) -> None:
        """Run a load in a thread (one at a time); answer /done with its values or /fail."""
        if not self._loading.acquire(blocking=False):
            raise InputError("busy: a model or directions load is already running")
        op = self._next_id()
        s.begin(op)

        def run() -> None:
            try:
                values = work()
            except GanspaceError as exc:
                self._fail(s, cmd, str(exc))
            except Exception as exc:  # a broken file must not kill the server
                log.exception("%s failed", cmd)
                self._fail(s, cmd, f"{type(exc).__name__}: {exc}")
            else:
                self._done(s, cmd, *values)
                self._broadcast_status()
            finally:
                self._loading.release()
                self._synced(s, s.end(op))

        threading.Thread(target=run, name="loader", daemon=True).start()

    def _broadcast_status(self) -> None:
        args = self._status_args()
        for s in list(self._sessions.values()):
            if s.subscribed:
                self._reply(s, "/status.reply", *args)

    def _model_load(self, s: Session, r: P.Request) -> None:
        path = self._paths.resolve(r["path"])
        device = self._state.model.device

        def work() -> tuple[Any, ...]:
            model = load_model(path, device=device)
            d = self._state.directions
            if d is not None:
                try:
                    d.check_compatible(model)
                except GanspaceError as exc:
                    log.info("directions dropped with the new model: %s", exc)
                    d = None
            self._state = _State(model, path.name, d)
            for sess in list(self._sessions.values()):
                sess.reset_for_model(model.latent_size, model.pitches)
            log.info("model %s loaded", path)
            return path.name, model.audio_length, model.sample_rate

        self._background(s, "/model.load", work)

    def _directions_load(self, s: Session, r: P.Request) -> None:
        path = self._paths.resolve(r["path"])
        if not path.is_file():
            raise InputError(f"{r['path']}: not a file")

        def work() -> tuple[Any, ...]:
            d = load_directions(path)
            st = self._state
            d.check_compatible(st.model)
            self._state = _State(st.model, st.name, d)
            log.info("directions %s loaded (K=%d, layer %s)", path, d.count, d.layer)
            return d.count, d.layer

        self._background(s, "/directions.load", work)

    def _layers(self, s: Session, r: P.Request) -> None:
        self._done(s, "/model.layers", *self._state.model.layer_names())

    def _pitches(self, s: Session, r: P.Request) -> None:
        self._done(s, "/model.pitches", *self._state.model.pitches)

    # ---- latents and coefficients ---------------------------------------------------------------
    def _slot(self, s: Session, slot: int) -> np.ndarray:
        z = s.z.get(slot)
        if z is None:
            raise InputError(f"z slot {slot} is empty: send /z.random {slot} first")
        return z

    def _z_random(self, s: Session, r: P.Request) -> None:
        s.z[r["slot"]] = self._state.model.random_z(1, r["seed"])[0]
        self._done(s, "/z.random", r["slot"])

    def _z_set(self, s: Session, r: P.Request) -> None:
        s.z[r["slot"]] = np.array([g[0] for g in r.groups], np.float32)
        self._done(s, "/z.set", r["slot"])

    def _z_get(self, s: Session, r: P.Request) -> None:
        z = self._slot(s, r["slot"])
        self._send(oscwire.encode_floats("/z.reply", (r["slot"],), z), s.reply_to)

    def _z_slerp(self, s: Session, r: P.Request) -> None:
        a, b = self._slot(s, r["a"]), self._slot(s, r["b"])
        s.z[r["dst"]] = slerp(a, b, r["t"]).astype(np.float32)
        self._done(s, "/z.slerp", r["dst"])

    def _coef_set(self, s: Session, r: P.Request) -> None:
        for index, value in r.groups:
            s.coefficients[index] = value
            s.note_set(index)
        self._done(s, "/coef.set")

    def _coef_setn(self, s: Session, r: P.Request) -> None:
        start, count = r["start"], r["count"]
        s.coefficients[start:start + count] = [g[0] for g in r.groups]
        s.note_set(start + count - 1)
        self._done(s, "/coef.setn")

    def _coef_zero(self, s: Session, r: P.Request) -> None:
        s.coefficients[:] = 0
        self._done(s, "/coef.zero")

    def _coef_get(self, s: Session, r: P.Request) -> None:
        start = r["start"]
        values = s.coefficients[start:start + r["count"]]
        self._send(oscwire.encode_floats("/coef.reply", (start,), values), s.reply_to)

    def _pitch(self, s: Session, r: P.Request) -> None:
        s.pitch = r["pitch"]
        self._done(s, "/pitch", r["pitch"])

    # ---- jobs -----------------------------------------------------------------------------------
    def _next_id(self) -> int:
        return next(self._ids) % 16_777_215 + 1  # exact as a Pd float

    def _submit(self, s: Session, r: P.Request, run: Callable[[Job], Result],
                total: int = 0) -> None:
        job = Job(self._next_id(), s, r.command.address, run, s.delivery, total, r.tag)
        try:
            dropped = self._queue.submit(job)
        except Busy:
            raise InputError("busy") from None
        s.begin(job.id)
        for old in dropped:
            self._fail(old.session, old.cmd, "superseded")
            self._synced(old.session, old.session.end(old.id))

    @staticmethod
    def _coefficients(rows: np.ndarray, d: Directions, least: int) -> np.ndarray:
        """Coefficients up to the last non-zero one (at least ``least``), checked against K."""
        used = np.flatnonzero(np.atleast_2d(rows).any(axis=0))
        k = int(used[-1]) + 1 if used.size else 0
        if k > d.count:
            raise InputError(f"coefficient {k - 1} is set but the directions hold only "
                             f"{d.count}")
        return np.array(rows[..., :max(k, least)], np.float32)

    def _z_mode_edit(self, s: Session) -> tuple[Directions | None, np.ndarray | None]:
        """Directions and coefficients for z mode: None, None unless directions are loaded and
        some coefficient is non-zero."""
        d = self._state.directions
        if d is None or not s.coefficients.any():
            return None, None
        return d, self._coefficients(s.coefficients, d, 1)

    def _need_directions(self) -> Directions:
        d = self._state.directions
        if d is None:
            raise InputError("no directions loaded: send /directions.load <path> first")
        return d

    def _synth(self, s: Session, r: P.Request) -> None:
        z = self._slot(s, r["zslot"])[None]
        pitch = r["pitch"] if r["pitch"] is not None else s.pitch
        m = self._state.model
        d, c = self._z_mode_edit(s)
        buffer = r["buffer"]

        def run(job: Job) -> Result:
            return Result([(buffer, m.generate(z, pitch, d, c)[0])], m.sample_rate, (buffer,))

        self._submit(s, r, run)

    def _synth_noz(self, s: Session, r: P.Request) -> None:
        d = self._need_directions()
        c = self._coefficients(s.coefficients, d, 1)
        pitch = r["pitch"] if r["pitch"] is not None else s.pitch
        m = self._state.model
        buffer = r["buffer"]

        def run(job: Job) -> Result:
            return Result([(buffer, m.generate(None, pitch, d, c)[0])], m.sample_rate, (buffer,))

        self._submit(s, r, run)

    def _synth_batch(self, s: Session, r: P.Request) -> None:
        z = np.stack([self._slot(s, slot) for slot, _ in r.groups])
        pitches = [p for _, p in r.groups]
        m = self._state.model
        d, c = self._z_mode_edit(s)
        prefix = r["prefix"]

        def run(job: Job) -> Result:
            audio = m.generate(z, pitches, d, c)
            names = [f"{prefix}{i}" for i in range(len(audio))]
            return Result(list(zip(names, audio, strict=True)), m.sample_rate,
                          (prefix, len(audio)))

        self._submit(s, r, run)

    def _envelope(self, s: Session, sounds: int) -> tuple[Envelope, float]:
        """The client's envelope and spacing, checked before any work (the library's checks and
        the server's tighter limits on sounds and clip length)."""
        st = s.settings
        m = self._state.model
        env = Envelope(st["trim"], st["attack"], st["sustain"], st["release"])
        spacing = float(st["spacing"])
        check_request(sounds, m.sample_rate, spacing, env, m.audio_length / m.sample_rate)
        if sounds > P.MAX_HALLU_SOUNDS:
            raise InputError(f"{sounds} sounds; a hallucination on this server holds at most "
                             f"{P.MAX_HALLU_SOUNDS}")
        seconds = (sounds - 1) * spacing + env.total
        if seconds > P.MAX_CLIP_SECONDS:
            raise InputError(f"the clip would last {seconds:.0f} s; this server makes at most "
                             f"{P.MAX_CLIP_SECONDS:.0f} s")
        return env, spacing

    def _hallu(self, s: Session, r: P.Request) -> None:
        d = self._need_directions()
        steps = self._coefficients(np.stack(s.steps), d, 1)
        sub = int(s.settings["interp"])
        sounds = coefficient_count(len(steps), sub)
        env, spacing = self._envelope(s, sounds)
        m, pitch, buffer = self._state.model, s.pitch, r["buffer"]

        def run(job: Job) -> Result:
            h = hallucinate_coefficients(m, d, steps, sub, pitch, env, spacing,
                                         progress=self._progress_cb(job), cancel=job.cancel)
            return Result([(buffer, h.clip)], h.sample_rate, (buffer, h.count, len(h.clip)))

        self._submit(s, r, run, sounds)

    def _hallu_z(self, s: Session, r: P.Request) -> None:
        n, steps = r["keypoints"], r["steps"]
        sounds = z_count(n, steps)
        env, spacing = self._envelope(s, sounds)
        m, pitch, buffer = self._state.model, s.pitch, r["buffer"]
        keypoints = m.random_z(n, r["seed"])
        d, c = self._z_mode_edit(s)

        def run(job: Job) -> Result:
            h = hallucinate_z(m, keypoints, steps, pitch, env, spacing, directions=d,
                              coefficients=c, progress=self._progress_cb(job),
                              cancel=job.cancel)
            return Result([(buffer, h.clip)], h.sample_rate, (buffer, h.count, len(h.clip)))

        self._submit(s, r, run, sounds)

    def _progress_cb(self, job: Job) -> Callable[[int, int], None]:
        def progress(done: int, total: int) -> None:
            if job.session.subscribed:
                self._reply(job.session, "/progress", job.cmd, job.id, int(done), int(total))

        return progress

    # ---- HALLU sequencer ------------------------------------------------------------------------
    def _send_step(self, s: Session) -> None:
        self._reply(s, "/hallu.step", s.current, len(s.steps))
        self._send_coefs(s)

    def _send_coefs(self, s: Session) -> None:
        """Mirror the current step's coefficients (``/hallu.coef <i> <v>``) to the client."""
        coefs = s.coefficients
        for i in range(s.mirror_count()):
            self._reply(s, "/hallu.coef", i, float(coefs[i]))

    def _hallu_step(self, s: Session, r: P.Request) -> None:
        cmd = r.command.address
        if cmd == "/hallu.add":
            s.add_step()
        elif cmd == "/hallu.remove":
            s.remove_step()
        else:
            s.move(1 if cmd == "/hallu.next" else -1)
        self._send_step(s)
        self._done(s, cmd)

    def _hallu_state(self, s: Session, r: P.Request) -> None:
        self._reply(s, "/hallu.step", s.current, len(s.steps))
        for name in P.HALLU_SETTINGS:
            self._reply(s, "/hallu.setting", name, float(s.settings[name]))
        self._send_coefs(s)
        self._done(s, "/hallu.state")

    def _hallu_setting(self, s: Session, r: P.Request) -> None:
        cmd = r.command.address
        name = cmd.split(".", 1)[1]
        value = r["steps"] if name == "interp" else r["seconds"]
        s.settings[name] = value
        self._reply(s, "/hallu.setting", name, float(value))
        self._done(s, cmd)

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
                    self._progress_cb(job)(0, job.total)
                try:
                    result = job.run(job)
                except GanspaceError as exc:
                    reason = job.reason if job.cancel.is_set() else str(exc)
                except Exception as exc:  # out of memory, a library bug: answer, keep serving
                    log.exception("job %s failed", job.cmd)
                    reason = f"{type(exc).__name__}: {exc}"
            self._outbox.put(_Outcome(job, result, reason, queued, time.perf_counter() - t0))

    def _deliver_loop(self) -> None:
        while True:
            out = self._outbox.get()
            if out is None:
                return
            t0 = time.perf_counter()
            job, s = out.job, out.job.session
            try:
                if out.result is None:
                    self._fail(s, job.cmd, out.reason)
                elif job.cancel.is_set():
                    self._fail(s, job.cmd, job.reason)
                else:
                    self._deliver(job, out.result)
                    self._done(s, job.cmd, *out.result.done)
            except delivery.DeliveryError as exc:
                self._fail(s, job.cmd, str(exc))
            except Exception as exc:  # e.g. a full disk: answer, keep serving
                log.exception("delivery of %s failed", job.cmd)
                self._fail(s, job.cmd, f"delivery failed: {exc}")
            finally:
                self._queue.finish(job)
                self._synced(s, s.end(job.id))
            self.timings.append(JobTiming(job.id, job.cmd, out.queued, out.generate,
                                          time.perf_counter() - t0))

    def _deliver(self, job: Job, result: Result) -> None:
        s, sr = job.session, result.sample_rate
        if job.delivery == "play":
            delivery.play(np.concatenate([a for _, a in result.buffers]), sr)
            return
        if job.delivery == "file":
            paths = self._cache.write_all(result.buffers, sr)
            for (name, audio), path in zip(result.buffers, paths, strict=True):
                self._reply(s, "/buffer.file", name, str(path), len(audio), sr)
            return
        for name, audio in result.buffers:
            delivery.stream(self._send, s, name, audio, sr, self.config.ack_timeout,
                            self.config.ack_tries, job.cancel.is_set)
