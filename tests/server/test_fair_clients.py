"""Fair scheduling, gone clients, session expiry and log rate limiting (issue 13).

The job queue is tested on its own (deterministic), the rest on a real server over loopback UDP
with a tiny model. Where a test needs jobs to stay queued, the model is *gated*: its generation
waits until the test opens the gate, so no result depends on how fast the machine is.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ganspace.engine.model import GANSynthModel, random_model
from ganspace_server import oscwire, protocol
from ganspace_server.client import Client
from ganspace_server.config import ServerConfig
from ganspace_server.guard import RateLimitedLog
from ganspace_server.jobs import Busy, Job, JobQueue, Result
from ganspace_server.server import Server
from ganspace_server.session import Session

T = 30.0  # seconds any single wait may take (generous: a loaded 2-core machine)


# ---- the job queue on its own ----------------------------------------------------------------
def _session(port: int) -> Session:
    return Session(("127.0.0.1", port), ("127.0.0.1", port), 40)


def _job(ident: int, s: Session, tag: str | None = None) -> Job:
    def run(job: Job) -> Result:
        return Result([], 16000, ())

    return Job(ident, s, "/synth", run, "file", tag=tag)


def _take_all(q: JobQueue) -> list[int]:
    ids = []
    while (job := q.take(timeout=0)) is not None:
        ids.append(job.id)
        q.finish(job)
    return ids


def test_the_queue_takes_the_least_recently_served_client_first() -> None:
    q = JobQueue(per_client=32, total=128)
    a, b, c = _session(1), _session(2), _session(3)
    for i in range(1, 6):
        q.submit(_job(i, a))           # a burst from a
    first = q.take(timeout=0)
    assert first is not None and first.id == 1
    q.submit(_job(11, b))              # b arrives while a's first job renders ...
    q.submit(_job(12, b))
    q.submit(_job(21, c))
    q.finish(first)
    # ... and goes next (a was just served), then c, then a again, round-robin
    assert _take_all(q) == [11, 21, 2, 12, 3, 4, 5]
    assert len(q) == 0


def test_the_queue_bounds_each_client_and_all_of_them() -> None:
    q = JobQueue(per_client=2, total=3)
    a, b, c = _session(1), _session(2), _session(3)
    q.submit(_job(1, a))
    q.submit(_job(2, a))
    with pytest.raises(Busy) as exc:
        q.submit(_job(3, a))
    assert str(exc.value) == "busy"   # a's own bound: only a is refused
    q.submit(_job(4, b))
    for s, ident in ((b, 5), (c, 6)):
        with pytest.raises(Busy) as exc:
            q.submit(_job(ident, s))
        assert str(exc.value).startswith("busy: ") and "all its clients" in str(exc.value)
    assert (len(q), q.alive(a), q.alive(b), q.alive(c)) == (3, 2, 1, 0)
    job = q.take(timeout=0)
    assert job is not None
    with pytest.raises(Busy):        # a started job is alive until its reply was sent
        q.submit(_job(7, c))
    q.finish(job)
    q.submit(_job(7, c))


def test_latest_wins_stays_within_one_client() -> None:
    q = JobQueue(per_client=32, total=128)
    a, b = _session(1), _session(2)
    running = _job(1, a, "slider")
    q.submit(running)
    assert q.take(timeout=0) is running
    q.submit(_job(2, a, "slider"))
    q.submit(_job(3, b, "slider"))
    dropped = q.submit(_job(4, a, "slider"))
    assert [j.id for j in dropped] == [2] and dropped[0].reason == "superseded"
    assert running.cancel.is_set() and running.reason == "superseded"
    q.finish(running)
    assert sorted(_take_all(q)) == [3, 4]   # b's job with the same tag is untouched


def test_drop_removes_a_clients_waiting_jobs_only() -> None:
    q = JobQueue(per_client=32, total=128)
    a, b = _session(1), _session(2)
    for i in range(1, 4):
        q.submit(_job(i, a))
    q.submit(_job(9, b))
    started = q.take(timeout=0)
    assert started is not None and started.id == 1
    assert [j.id for j in q.drop(a)] == [2, 3]
    assert not started.cancel.is_set()      # the running job goes on
    assert (q.alive(a), q.alive(b)) == (1, 1)
    q.finish(started)
    assert _take_all(q) == [9]


# ---- log rate limiting ------------------------------------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_repeated_warnings_are_counted_and_reported_every_window(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    rl = RateLimitedLog(logging.getLogger("t.repeat"), window=5.0, clock=clock)
    with caplog.at_level(logging.WARNING, "t.repeat"):
        for _ in range(1000):
            rl.warning("%s:%d /synth failed: %s", "127.0.0.1", 9000, "bad pitch")
        rl.warning("127.0.0.1:9001 /synth failed: bad pitch")   # another client: its own line
        clock.now += 1.0
        rl.flush()                                              # the window is still open
        assert [r.getMessage() for r in caplog.records] == [
            "127.0.0.1:9000 /synth failed: bad pitch", "127.0.0.1:9001 /synth failed: bad pitch"]
        clock.now += 4.5
        for _ in range(10):  # still repeating: counted in the next window
            rl.warning("127.0.0.1:9000 /synth failed: bad pitch")
        clock.now += 5.0
        rl.flush()
        clock.now += 5.0
        rl.flush()           # nothing repeated any more: nothing to say, the text is forgotten
        rl.warning("127.0.0.1:9000 /synth failed: bad pitch")
    assert [r.getMessage() for r in caplog.records][2:] == [
        "127.0.0.1:9000 /synth failed: bad pitch (repeated 999 times in the last 5 s)",
        "127.0.0.1:9000 /synth failed: bad pitch (repeated 10 times in the last 5 s)",
        "127.0.0.1:9000 /synth failed: bad pitch"]


def test_many_different_warnings_are_still_bounded(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    rl = RateLimitedLog(logging.getLogger("t.many"), per_second=1.0, burst=5, max_texts=3,
                        clock=clock)
    with caplog.at_level(logging.WARNING, "t.many"):
        for i in range(100):
            rl.warning("client %d sent garbage", i)
        clock.now += 2.0
        rl.warning("client %d sent garbage", 100)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [f"client {i} sent garbage" for i in range(5)] + [
        "(95 similar messages suppressed)", "client 100 sent garbage"]
    assert len(rl._repeats) == 3


def test_a_flood_of_identical_bad_messages_logs_a_line_not_a_flood(
        make_server: ServerFactory, caplog: pytest.LogCaptureFixture) -> None:
    server = make_server()
    peer = Peer(server)
    start = time.monotonic()
    with caplog.at_level(logging.WARNING, "ganspace_server"):
        for i in range(20):
            for _ in range(100):
                peer.send("/pitch", 1000)
            peer.send("/sync", i)
            fails = [m for m in peer.until(lambda m: m[0] == "/synced") if m[0] == "/fail"]
            assert len(fails) == 100 and fails[0][1][:1] == ["/pitch"]
            assert all(f == fails[0] for f in fails)   # every message is still answered
    lines = [r.getMessage() for r in caplog.records if "/pitch failed" in r.getMessage()]
    windows = (time.monotonic() - start) / 5.0
    assert 1 <= len(lines) <= 2 + windows, lines
    peer.close()


# ---- live servers -----------------------------------------------------------------------------
class GatedModel:
    """Makes a model's generation wait until the test opens the gate."""

    def __init__(self, model: GANSynthModel) -> None:
        self.model = model
        self.open = threading.Event()
        self.entered = threading.Event()
        generate = model.generate

        def gated(*args: Any, **kw: Any) -> np.ndarray:
            self.entered.set()
            assert self.open.wait(T), "the test never opened the gate"
            return generate(*args, **kw)

        model.generate = gated  # type: ignore[method-assign]


ServerFactory = Callable[..., Server]


@pytest.fixture
def make_server(tiny_model: GANSynthModel, tmp_path: Path) -> Iterator[ServerFactory]:
    """Start servers (closed at teardown) on free ports."""
    started: list[Server] = []

    def make(model: GANSynthModel | None = None, **kw: Any) -> Server:
        cfg = ServerConfig(port=0, cache_dir=tmp_path / f"cache{len(started)}",
                           ack_timeout=0.1, ack_tries=3)
        for k, v in kw.items():
            setattr(cfg, k, v)
        s = Server(model or tiny_model, cfg, "tiny")
        s.start()
        started.append(s)
        return s

    yield make
    for s in started:
        s.close()


@pytest.fixture
def gated() -> GatedModel:
    return GatedModel(random_model())


Message = tuple[str, list[Any]]


class Peer:
    """A bare UDP socket speaking OSC; it never acknowledges stream chunks by itself."""

    def __init__(self, server: Server) -> None:
        self.to = server.address
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2**22)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(T)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return host, port

    def send(self, address: str, *args: Any) -> None:
        self.sock.sendto(oscwire.encode(address, *args), self.to)

    def recv(self) -> Message:
        return next(oscwire.parse(self.sock.recvfrom(65536)[0]))

    def until(self, stop: Callable[[Message], bool]) -> list[Message]:
        """Messages up to and including the first ``stop`` accepts."""
        got = []
        while True:
            m = self.recv()
            got.append(m)
            if stop(m):
                return got

    def close(self) -> None:
        self.sock.close()


def _answer_to(cmd: str) -> Callable[[Message], bool]:
    return lambda m: m[0] in ("/done", "/fail") and m[1][:1] == [cmd]


def _wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll a condition of the server's state (its housekeeping runs twice a second)."""
    deadline = time.monotonic() + T
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_a_flooding_client_delays_a_well_behaved_one_by_at_most_one_job(
        make_server: ServerFactory) -> None:
    """A client keeps its queue full (200 /synth, then one more for every note); another
    plays one note at a time. None of the latter's notes is refused, and each waits for at most
    one of the flooder's jobs."""
    server = make_server()
    flood = Peer(server)
    flooder_address = flood.address
    flood.send("/z.random", 0, 1)
    assert flood.recv() == ("/done", ["/z.random", 0])
    stop = threading.Event()
    busy = [0]
    sent = [0]

    def keep_flooding() -> None:
        flood.sock.settimeout(0.2)
        while not stop.is_set():
            try:
                m = flood.recv()
            except TimeoutError:
                continue
            except OSError:
                return
            if m[0] == "/fail" and m[1][1] == "busy":
                busy[0] += 1
            if m[0] == "/done" and m[1][0] == "/synth":   # a slot is free again: fill it
                flood.send("/synth", f"f{sent[0]}", 40)
                sent[0] += 1

    for _ in range(200):
        flood.send("/synth", f"f{sent[0]}", 40)
        sent[0] += 1
    flooder = threading.Thread(target=keep_flooding, daemon=True)
    flooder.start()
    try:
        with Client(*server.address, timeout=T) as c:
            c.random_z(0, 2)
            _wait_until(lambda: busy[0] > 0, "the flooder's queue to be full")
            for i in range(8):
                c.synth(f"w{i}", 40)   # raises ServerError on busy
            mine = c._sock.getsockname()[:2]
    finally:
        stop.set()
        flooder.join(timeout=T)
        flood.close()
    timings = list(server.timings)
    flooded = [t for t in timings if t.client == flooder_address]
    overtaken = 0
    for t in (t for t in timings if t.client == mine and t.label.startswith("w")):
        submitted = t.started - t.queued
        before = [f for f in flooded if submitted < f.started < t.started]
        assert len(before) <= 1, f"{t.label} waited for {len(before)} of the flooder's jobs"
        overtaken += any(f.started - f.queued < submitted and f.started > t.started
                         for f in flooded)
    assert overtaken >= 6, "the flooder's queue was not full while the other client played"
    assert busy[0] >= 150


def test_the_bound_on_all_jobs_answers_busy_with_a_reason(make_server: ServerFactory,
                                                          gated: GatedModel) -> None:
    server = make_server(gated.model, client_jobs=3, max_jobs=4)
    a, b = Peer(server), Peer(server)
    try:
        for p in (a, b):
            p.send("/z.random", 0, 1)
            p.until(_answer_to("/z.random"))
        for i in range(4):
            a.send("/synth", f"a{i}", 40)
        assert a.until(_answer_to("/synth")) == [("/fail", ["/synth", "busy"])]
        b.send("/synth", "b0", 40)
        b.send("/synth", "b1", 40)
        reason = b.until(_answer_to("/synth"))[-1][1][1]
        assert reason.startswith("busy: the server holds 4 jobs of all its clients")
        b.send("/clients")
        assert b.until(lambda m: m[0] == "/clients.reply")[-1] == (
            "/clients.reply", [2, protocol.MAX_CLIENTS, 4, 1])
        gated.open.set()
        assert [a.until(_answer_to("/synth"))[-1][0] for _ in range(3)] == ["/done"] * 3
        assert b.until(_answer_to("/synth"))[-1] == ("/done", ["/synth", "b0"])
    finally:
        gated.open.set()
        a.close()
        b.close()


def test_a_vanished_stream_client_has_its_jobs_dropped(
        make_server: ServerFactory, caplog: pytest.LogCaptureFixture) -> None:
    """A stream client queues 10 notes and stops acknowledging: the first delivery fails after
    its retries, the other 9 are answered `dropped` without being streamed, logged once; another
    client plays on; the client that speaks again is served again."""
    server = make_server()
    gone = Peer(server)
    try:
        with caplog.at_level(logging.WARNING, "ganspace_server"), \
                Client(*server.address, timeout=T) as other:
            gone.send("/delivery", "stream")
            gone.send("/z.random", 0, 1)
            for i in range(10):
                gone.send("/synth", f"g{i}", 40)
            other.random_z(0, 2)
            got: list[Message] = []
            while sum(_answer_to("/synth")(m) for m in got) < 10:
                got.append(gone.recv())
            assert len(other.synth("o", 40)) == 64000
        fails = [m[1][1] for m in got if _answer_to("/synth")(m)]
        assert fails[0].startswith("no /buffer.ack for g0")
        assert fails[1:] == [fails[1]] * 9 and fails[1].startswith("dropped: ")
        assert [m[0] for m in got].count("/buffer.begin") == 1
        logged = [r.getMessage() for r in caplog.records if "waiting jobs" in r.getMessage()]
        assert len(logged) == 1 and "stopped acknowledging" in logged[0]
        assert server.dropped == 9
        gone.send("/delivery", "file")       # back: served again
        gone.send("/synth", "again", 40)
        assert gone.until(_answer_to("/synth"))[-1] == ("/done", ["/synth", "again"])
    finally:
        gone.close()


def test_a_silent_client_has_its_waiting_jobs_dropped(make_server: ServerFactory,
                                                      gated: GatedModel) -> None:
    server = make_server(gated.model, client_timeout=0.5)
    silent = Peer(server)
    try:
        silent.send("/z.random", 0, 1)
        for i in range(4):
            silent.send("/synth", f"s{i}", 40)
        assert gated.entered.wait(T)       # s0 renders (held at the gate), s1..s3 wait
        fails = [silent.until(_answer_to("/synth"))[-1] for _ in range(3)]
        assert all(f[0] == "/fail" and f[1][1] == "dropped: this client sent nothing for 0.5 s"
                   for f in fails), fails
        gated.open.set()                   # the running job was not dropped
        assert silent.until(_answer_to("/synth"))[-1] == ("/done", ["/synth", "s0"])
        assert server.dropped == 3
    finally:
        gated.open.set()
        silent.close()


def test_an_idle_session_expires_and_its_client_is_told_to_reinitialise(
        make_server: ServerFactory) -> None:
    server = make_server(session_idle=600.0)
    peer, listener = Peer(server), Peer(server)
    try:
        peer.send("/notify", listener.address[1], 1)   # replies go to another port, as in Pd
        assert listener.recv() == ("/done", ["/notify", listener.address[1]])
        peer.send("/z.random", 3, 1)
        assert listener.recv() == ("/done", ["/z.random", 3])
        server.config.session_idle = 0.2
        _wait_until(lambda: not server.sessions(), "the session to expire")
        server.config.session_idle = 600.0
        for cmd in ("/z.get", "/synth", "/status"):
            peer.send(cmd, *(["snd"] if cmd == "/synth" else [3] if cmd == "/z.get" else []))
            assert listener.recv() == ("/fail", [cmd, protocol.EXPIRED_REASON])
        assert not server.sessions() and server.expired == 1
        peer.send("/notify", listener.address[1], 1)   # re-initialise: a fresh session
        assert listener.recv() == ("/done", ["/notify", listener.address[1]])
        peer.send("/z.get", 3)
        assert listener.recv() == ("/fail", ["/z.get", "z slot 3 is empty: send /z.random 3 "
                                                      "first"])
    finally:
        peer.close()
        listener.close()


def test_the_session_bound_evicts_the_least_recently_used_silent_client(
        make_server: ServerFactory) -> None:
    server = make_server(max_sessions=3)
    peers = [Peer(server) for _ in range(4)]
    try:
        for p in peers[:3]:
            p.send("/z.random", 0, 1)
            assert p.recv()[0] == "/done"
        peers[1].send("/status")           # peer 0 is now the least recently used
        assert peers[1].recv()[0] == "/status.reply"
        peers[3].send("/status")           # nobody has been silent for client_timeout (300 s)
        assert peers[3].recv() == ("/fail", ["/status", "too many clients (at most 3)"])
        server.config.client_timeout = 0.0  # now everybody has
        peers[3].send("/clients")
        assert peers[3].recv() == ("/clients.reply", [3, 3, 0, 0])
        peers[0].send("/status")
        assert peers[0].recv() == ("/fail", ["/status", protocol.EXPIRED_REASON])
        for p in peers[1:3]:               # the others kept their state
            p.send("/z.get", 0)
            assert p.recv()[0] == "/z.reply"
    finally:
        for p in peers:
            p.close()


def test_a_stream_superseded_while_it_is_sent_answers_superseded(
        make_server: ServerFactory) -> None:
    """Latest wins during a stream delivery: the old note answers `superseded` (not `cancelled`)
    and the client is not taken for gone."""
    server = make_server(ack_timeout=5.0)   # the old stream waits for acks the whole test
    p = Peer(server)
    try:
        p.send("/delivery", "stream")
        p.send("/z.random", 0, 1)
        p.send("/latest", "s")
        p.send("/synth", "a", 40)
        p.until(lambda m: m[0] == "/buffer.begin")   # "a" is being streamed, never acked
        p.send("/latest", "s")
        p.send("/synth", "b", 40)
        answers: list[Message] = []
        while len(answers) < 2:
            raw = p.sock.recvfrom(65536)[0]
            if raw.startswith(b"/buffer.chunk\0"):
                _, (name, offset), _ = oscwire.decode_floats(raw)
                if name == "b":
                    p.send("/buffer.ack", name, offset)
                continue
            m = next(oscwire.parse(raw))
            if _answer_to("/synth")(m):
                answers.append(m)
        assert answers == [("/fail", ["/synth", "superseded"]), ("/done", ["/synth", "b"])]
        assert server.dropped == 0 and not server.sessions()[0].gone
    finally:
        p.close()


def test_serve_flags_set_the_client_limits(tiny_model_dir: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from ganspace.cli import main as cli_main
    from ganspace_server import server as server_module

    configs: list[ServerConfig] = []

    class Recorder:
        address = ("127.0.0.1", 1)

        def __init__(self, model: object, config: ServerConfig, *args: object) -> None:
            configs.append(config)

        def start(self) -> None: ...

        def wait(self) -> bool:
            return True

        def close(self) -> None: ...

    monkeypatch.setattr(server_module, "Server", Recorder)
    assert cli_main(["serve", "--model", str(tiny_model_dir), "--device", "cpu", "--port", "0",
                     "--client-jobs", "4", "--max-jobs", "9", "--client-timeout", "60",
                     "--session-idle", "7200", "--max-sessions", "8"]) == 0
    cfg = configs[0]
    assert (cfg.client_jobs, cfg.max_jobs, cfg.client_timeout, cfg.session_idle,
            cfg.max_sessions) == (4, 9, 60.0, 7200.0, 8)
    assert cli_main(["serve", "--model", str(tiny_model_dir), "--device", "cpu"]) == 0
    defaults = ServerConfig()
    assert (configs[1].client_jobs, configs[1].session_idle) == (defaults.client_jobs,
                                                                 defaults.session_idle)
