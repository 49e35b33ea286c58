"""The OSC server in-process (its own threads) over real UDP on loopback, with tiny random models.

Every wait has a time limit, so a broken server fails a test instead of hanging it.
"""

from __future__ import annotations

import random
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from pythonosc.osc_message_builder import OscMessageBuilder

from ganspace.engine.model import GANSynthModel, random_model
from ganspace.space.directions import Directions, load_directions, save_directions
from ganspace.space.hallucinate import Envelope, hallucinate_coefficients, hallucinate_z
from ganspace_server import oscwire, protocol
from ganspace_server.client import Client
from ganspace_server.config import ServerConfig
from ganspace_server.connection import ServerError
from ganspace_server.schema import Command
from ganspace_server.server import Server

T = 20.0  # seconds any single answer may take


# ---- fixtures -----------------------------------------------------------------------------------
def _directions(model: GANSynthModel, k: int = 6, layer: str = "conv0") -> Directions:
    h, w, c = model.layer_shape(layer)
    rng = np.random.default_rng(0)
    comp = rng.standard_normal((k, h * w * c)).astype(np.float32)
    comp /= np.linalg.norm(comp, axis=1, keepdims=True)
    stdev = np.linspace(2.0, 1.0, k).astype(np.float32)
    mean = (0.1 * rng.standard_normal((h, w, c))).astype(np.float32)
    return Directions(layer, comp.reshape(k, h, w, c), stdev, stdev**2 / (stdev**2).sum(), mean,
                      model.fingerprint, {"estimator": "test"})


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, tiny_model: GANSynthModel) -> Path:
    """A model root: tiny/, tiny2/ (other weights), broken/, dirs.safetensors, evil.pkl."""
    root = tmp_path_factory.mktemp("root")
    tiny_model.save(root / "tiny")
    random_model(seed=1).save(root / "tiny2")
    (root / "broken").mkdir()
    (root / "broken" / "model.json").write_text("{not json")
    save_directions(_directions(tiny_model), root / "dirs.safetensors", dtype="float32")
    (root / "evil.pkl").write_bytes(b"cos\nsystem\n")
    return root


@pytest.fixture(scope="module")
def directions(root: Path) -> Directions:
    return load_directions(root / "dirs.safetensors")


ServerFactory = Callable[..., Server]


@pytest.fixture
def make_server(tiny_model: GANSynthModel, root: Path, tmp_path: Path
                ) -> Iterator[ServerFactory]:
    """Start servers (closed at teardown) on free ports with the tiny model."""
    started: list[Server] = []

    def make(directions: Directions | None = None, **kw: Any) -> Server:
        cfg = ServerConfig(port=0, model_roots=[root], cache_dir=tmp_path / f"cache{len(started)}",
                           ack_timeout=0.1, ack_tries=3, session_idle=5.0,
                           presets_dir=tmp_path / "presets")
        for k, v in kw.items():
            setattr(cfg, k, v)
        s = Server(tiny_model, cfg, "tiny", directions)
        s.start()
        started.append(s)
        return s

    yield make
    for s in started:
        s.close()


@pytest.fixture(scope="module")
def server(tiny_model: GANSynthModel, root: Path, directions: Directions,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A shared server with the tiny model and directions loaded."""
    cfg = ServerConfig(port=0, model_roots=[root], cache_dir=tmp_path_factory.mktemp("cache"),
                       ack_timeout=0.1, ack_tries=3, session_idle=5.0,
                       presets_dir=tmp_path_factory.mktemp("presets"))
    with Server(tiny_model, cfg, "tiny", directions) as s:
        yield s


@pytest.fixture
def client(server: Server) -> Iterator[Client]:
    with Client(*server.address, timeout=T) as c:
        yield c


class Peer:
    """A bare UDP socket speaking OSC (for what the Client would do right)."""

    def __init__(self, server: Server) -> None:
        self.to = server.address
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(T)

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    def send(self, address: str, *args: Any) -> None:
        self.sock.sendto(oscwire.encode(address, *args), self.to)

    def recv_raw(self) -> bytes:
        return self.sock.recvfrom(65536)[0]

    def recv(self) -> tuple[str, list[Any]]:
        return next(oscwire.parse(self.recv_raw()))

    def until(self, address: str, first: Any = None) -> list[tuple[str, list[Any]]]:
        """Messages up to and including the first with ``address`` (and first argument)."""
        got = []
        while True:
            m = self.recv()
            got.append(m)
            if m[0] == address and (first is None or m[1][:1] == [first]):
                return got

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def peer(server: Server) -> Iterator[Peer]:
    p = Peer(server)
    yield p
    p.close()


# ---- every address, good and bad ----------------------------------------------------------------
def _good_args(c: Client, root: Path) -> dict[str, tuple[list[Any], str | None]]:
    """A valid call of every command and the first message it answers (None: no answer)."""
    port = c._sock.getsockname()[1]
    z = [0.5] * 8
    return {
        "/notify": ([port, 0], "/done"), "/delivery": (["file"], "/done"),
        "/buffer.ack": (["snd", 0], None), "/status": ([], "/status.reply"),
        "/version": ([], "/version.reply"), "/clients": ([], "/clients.reply"),
        "/sync": ([3], "/synced"),
        "/latest": (["t"], None), "/cancel": ([], "/done"), "/quit": ([], "/fail"),
        "/model.load": (["tiny"], "/done"), "/directions.load": (["dirs.safetensors"], "/done"),
        "/model.layers": ([], "/done"), "/model.pitches": ([], "/done"),
        "/directions.labels": ([], "/directions.labels.reply"),
        "/z.random": ([1, 5], "/done"), "/z.set": ([0, *z], "/done"),
        "/z.get": ([0], "/z.reply"), "/z.slerp": ([2, 0, 1, 0.5], "/done"),
        "/coef.set": ([0, 0.5, 3, -1], "/done"), "/coef.setn": ([1, 2, 0.1, 0.2], "/done"),
        "/coef.zero": ([], "/done"), "/coef.get": ([0, 4], "/coef.reply"),
        "/pitch": ([40], "/done"), "/synth": (["snd", 40, 0], "/done"),
        "/synth.noz": (["snd"], "/done"), "/synth.batch": (["b", 0, 40], "/done"),
        "/hallu": (["h"], "/done"), "/hallu.z": (["hz", 2, 0, 1], "/done"),
        "/hallu.add": ([], "/hallu.step"), "/hallu.remove": ([], "/hallu.step"),
        "/hallu.next": ([], "/hallu.step"), "/hallu.prev": ([], "/hallu.step"),
        "/hallu.state": ([], "/hallu.step"), "/hallu.interp": ([2], "/hallu.setting"),
        "/hallu.spacing": ([0.25], "/hallu.setting"), "/hallu.trim": ([0.0], "/hallu.setting"),
        "/hallu.attack": ([0.01], "/hallu.setting"), "/hallu.sustain": ([0.2], "/hallu.setting"),
        "/hallu.release": ([0.2], "/hallu.setting"),
        "/bank.source": ([0], "/done"), "/bank": (["bk", 40, 41], "/done"),
        "/preset.save": (["p1"], "/done"), "/preset.load": (["p1"], "/hallu.step"),
        "/preset.list": ([], "/done"), "/hallu.rand": ([1.0, 4, 3], "/hallu.step"),
    }


def _bad_args(cmd: Command) -> list[list[Any]]:
    """Malformed calls: one argument too many, and (when it has arguments) a wrong type."""
    fixed = [a for a in cmd.args]
    good_shape: list[Any] = [("x" if a.type == "s" else 1) for a in fixed]
    bad = []
    if cmd.repeat is None:
        bad.append(good_shape + ["extra"])
    if fixed:
        bad.append([(1.0 if a.type == "s" else "x") for a in fixed[:1]] + good_shape[1:])
    return bad


def test_every_address_answers_good_and_bad_arguments(make_server: ServerFactory,
                                                      root: Path) -> None:
    server = make_server()
    with Client(*server.address, timeout=T) as c:
        c.random_z(0, 1)
        c.random_z(1, 2)
        good = _good_args(c, root)
        assert set(good) == set(protocol.COMMANDS)
        order = ["/directions.load", *[a for a in good if a != "/directions.load"]]
        for address in order:
            args, first = good[address]
            c.drain()
            c.send(address, *args)
            if first is None:
                c.send("/sync", 99)
                got = c.expect(lambda m: m[0] in ("/synced", "/fail"))
                assert got == ("/synced", [99]), (address, got)
                continue
            got = c.expect(lambda m, f=first: m[0] in (f, "/fail"))
            assert got[0] == first, (address, got)
            c.sync(7)
        for cmd in protocol.COMMANDS.values():
            for args in _bad_args(cmd):
                c.drain()
                c.send(cmd.address, *args)
                got = c.expect(lambda m: m[0] == "/fail")
                assert got[1][0] == cmd.address and got[1][1], (cmd.address, args, got)
        assert c.status().model == "tiny"


# ---- synthesis is bit-exact in both delivery modes ----------------------------------------------
@pytest.mark.parametrize("mode", ["file", "stream"])
def test_synth_is_bit_exact(client: Client, tiny_model: GANSynthModel, directions: Directions,
                            mode: str) -> None:
    client.set_delivery(mode)
    client.random_z(0, seed=11)
    z = client.get_z(0)
    assert np.array_equal(z, tiny_model.random_z(1, 11)[0])
    client.set_coefficient({0: 1.5, 2: -0.5})
    got = client.synth("snd", 40)
    want = tiny_model.generate(z[None], 40, directions, np.array([1.5, 0, -0.5], np.float32))[0]
    assert got.dtype == np.float32 and np.array_equal(got, want)
    got = client.synth_noz("nz", 50)
    want = tiny_model.generate(None, 50, directions, np.array([1.5, 0, -0.5], np.float32))[0]
    assert np.array_equal(got, want)


def test_batch_is_bit_exact_and_plain_without_coefficients(client: Client,
                                                           tiny_model: GANSynthModel) -> None:
    client.set_delivery("stream")
    client.random_z(3, 1)
    client.random_z(4, 2)
    got = client.synth_batch("n", [(3, 40), (4, 60)])
    z = np.concatenate([tiny_model.random_z(1, 1), tiny_model.random_z(1, 2)])
    want = tiny_model.generate(z, [40, 60])
    assert len(got) == 2 and all(np.array_equal(g, w) for g, w in zip(got, want, strict=True))


def test_hallucinations_are_bit_exact(client: Client, tiny_model: GANSynthModel,
                                      directions: Directions) -> None:
    client.set_delivery("file")
    client.set_pitch(45)
    for name, value in (("interp", 2), ("spacing", 0.25), ("trim", 0.0), ("attack", 0.01),
                        ("sustain", 0.2), ("release", 0.2)):
        client.hallu_setting(name, value)
    env = Envelope(0.0, 0.01, 0.2, 0.2)
    client.set_coefficient({1: 1.0})
    assert client.hallu("add") == (1, 2)
    client.set_coefficient({1: -1.0, 0: 0.5})
    got = client.hallucinate("h")
    steps = np.array([[0, 1.0], [0.5, -1.0]], np.float32)
    want = hallucinate_coefficients(tiny_model, directions, steps, 2, 45, env, 0.25)
    assert np.array_equal(got, want.clip)
    client.zero_coefficients()
    client.hallu("prev")
    client.zero_coefficients()
    got = client.hallucinate_z("hz", 2, 1, seed=3)
    want = hallucinate_z(tiny_model, tiny_model.random_z(2, 3), 1, 45, env, 0.25)
    assert np.array_equal(got, want.clip)


def test_hallu_sequencer_mirrors_its_state(client: Client) -> None:
    st = client.hallu_state()
    assert (st.index, st.count) == (0, 1) and len(st.coefficients) == protocol.MIRROR_MIN
    assert set(st.settings) == set(protocol.HALLU_SETTINGS)
    client.set_coefficient({20: 2.0})
    assert client.hallu("add") == (1, 2)
    client.set_coefficient({20: -2.0})
    assert client.hallu("next") == (1, 2)  # stays on the last
    assert client.hallu("prev") == (0, 2)
    st = client.hallu_state()
    assert len(st.coefficients) == 21 and st.coefficients[20] == 2.0
    assert client.hallu("remove") == (0, 1)
    assert client.hallu_state().coefficients[20] == -2.0
    assert client.hallu("remove") == (0, 1)  # the last step is zeroed, not removed
    assert not client.hallu_state().coefficients.any()
    for _ in range(protocol.MAX_STEPS - 1):
        client.hallu("add")
    with pytest.raises(ServerError, match="at most"):
        client.hallu("add")


def test_state_errors_are_reported(client: Client) -> None:
    with pytest.raises(ServerError, match="slot 9 is empty"):
        client.synth("s", 40, 9)
    with pytest.raises(ServerError, match="empty"):
        client.get_z(9)
    client.set_coefficient({10: 1.0})  # the directions hold 6
    client.random_z(0)
    with pytest.raises(ServerError, match="directions hold only 6"):
        client.synth("s", 40)
    client.zero_coefficients()
    client.hallu_setting("sustain", 4.0)
    with pytest.raises(ServerError, match="envelope|longer|exceed|note"):
        client.hallucinate("h")


# ---- replies, ordering, clients -----------------------------------------------------------------
def test_notify_sends_replies_to_the_registered_port(server: Server, peer: Peer) -> None:
    listener = Peer(server)
    try:
        peer.send("/notify", float(listener.port), 1.0)  # as Pd sends it: floats
        assert listener.recv() == ("/done", ["/notify", listener.port])
        peer.send("/status")
        assert listener.recv()[0] == "/status.reply"
        peer.send("/notify", peer.port, 0)
        assert peer.recv() == ("/done", ["/notify", peer.port])
    finally:
        listener.close()


def test_sync_waits_for_earlier_jobs(peer: Peer) -> None:
    peer.send("/z.random", 0, 1)
    peer.send("/synth", "a", 40)
    peer.send("/sync", 5)
    peer.send("/status")
    got = [m[0] for m in peer.until("/synced", 5)]
    assert got.index("/done") < got.index("/status.reply")  # /z.random, at once
    assert got[-1] == "/synced" and "/buffer.file" in got
    assert got.index("/done") < got.index("/synced")


def test_burst_from_several_clients_is_answered_to_each(server: Server,
                                                        tiny_model: GANSynthModel) -> None:
    errors: list[BaseException] = []

    def play(k: int) -> None:
        try:
            with Client(*server.address, timeout=T, delivery="stream") as c:
                z = np.full(8, k / 10, np.float32)
                c.set_z(0, z)
                for _ in range(10):
                    c.send("/z.get", 0)
                for _ in range(10):
                    _, args = c.expect(lambda m: m[0] == "/z.reply")
                    assert np.array_equal(np.array(args[1:], np.float32), z)
                got = c.synth(f"s{k}", 30 + k)
                assert np.array_equal(got, tiny_model.generate(z[None], 30 + k)[0])
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=play, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)


def test_too_many_clients_are_refused(make_server: ServerFactory) -> None:
    server = make_server(session_idle=600.0)
    peers = [Peer(server) for _ in range(protocol.MAX_CLIENTS + 1)]
    try:
        for p in peers:
            p.send("/status")
        replies = [p.recv() for p in peers]
        assert all(r[0] == "/status.reply" for r in replies[:-1])
        assert replies[-1] == ("/fail", ["/status", f"too many clients (at most "
                                         f"{protocol.MAX_CLIENTS})"])
    finally:
        for p in peers:
            p.close()


# ---- never dies ---------------------------------------------------------------------------------
def test_fuzz_garbage_then_status_still_answers(server: Server, peer: Peer) -> None:
    rng = random.Random(1234)
    valid = [oscwire.encode("/status"), oscwire.encode("/z.random", 1, 2),
             oscwire.encode("/coef.set", 1, 0.5), oscwire.encode("/hallu.spacing", 1.0),
             oscwire.encode_floats("/z.set", (0,), np.ones(8))]
    safe = [c for c, cmd in protocol.COMMANDS.items()
            if not cmd.job and c not in ("/model.load", "/directions.load")]
    values: list[Any] = [0, 1, -1, 2**31 - 1, 0.5, float("nan"), float("inf"), -1e30, "",
                         "x" * 5000, "snd", "../etc", b"\x00\x01"]
    sent = 0
    for i in range(3000):
        kind = i % 6
        if kind == 0:
            data = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 200)))
        elif kind == 1:
            v = rng.choice(valid)
            data = v[: rng.randrange(0, len(v))]
        elif kind == 2:
            tags = "".join(rng.choice("ifsbhdTFNtmr[]xyz") for _ in range(rng.randrange(0, 6)))
            data = oscwire.osc_string(rng.choice(safe)) + oscwire.osc_string("," + tags) + \
                bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 40)))
        elif kind == 3:
            args = [rng.choice(values) for _ in range(rng.randrange(0, 5))]
            b = OscMessageBuilder(rng.choice(safe))
            for a in args:
                b.add_arg(a)
            data = b.build().dgram
        elif kind == 4:
            inner = rng.choice(valid)
            data = b"#bundle\0" + struct.pack(">Q", 1) + struct.pack(">i", rng.randrange(
                -5, 2 * len(inner))) + inner
        else:
            data = b"/" + bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 60000)))
        if data.startswith(b"/quit"):
            continue
        peer.sock.sendto(data, peer.to)
        sent += 1
        if i % 100 == 0:  # let the server keep up so the socket buffer never overflows
            peer.send("/notify", peer.port, 0)  # a fuzzed /notify may have moved the replies
            peer.send("/sync", i)
            peer.until("/synced", i)
    assert sent > 2500
    peer.sock.settimeout(5)
    peer.send("/status")
    assert peer.until("/status.reply")[-1][1][0] == "tiny"
    assert all(t.is_alive() for t in server._threads)


def test_play_without_a_sound_card_fails_cleanly(client: Client) -> None:
    client.set_delivery("play")
    client.random_z(0, 1)
    try:
        client.synth("p", 40)
    except ServerError as exc:
        assert exc.reason
    assert client.status().model == "tiny"


# ---- stream flow control ------------------------------------------------------------------------
def _stream_synth(peer: Peer, skip_first: bool, ack: bool) -> tuple[list[tuple[str, list]],
                                                                    np.ndarray]:
    peer.send("/delivery", "stream")
    peer.send("/z.random", 0, 1)
    peer.send("/synth", "s", 40)
    data = np.zeros(64000, np.float32)
    msgs = []
    skipped = False
    while True:
        raw = peer.recv_raw()
        if raw.startswith(b"/buffer.chunk\0"):
            _, (name, off), vals = oscwire.decode_floats(raw)
            data[off: off + len(vals)] = vals
            if skip_first and off == 0 and not skipped:
                skipped = True
                continue
            if ack:
                peer.send("/buffer.ack", name, off)
            continue
        m = next(oscwire.parse(raw))
        msgs.append(m)
        if m[0] in ("/done", "/fail") and m[1][0] == "/synth":
            return msgs, data


def test_stream_resends_a_chunk_whose_ack_was_lost(peer: Peer, tiny_model: GANSynthModel) -> None:
    msgs, data = _stream_synth(peer, skip_first=True, ack=True)
    assert msgs[-1] == ("/done", ["/synth", "s"])
    assert ("/buffer.end", ["s", 64000, 16000]) in msgs
    assert np.array_equal(data, tiny_model.generate(tiny_model.random_z(1, 1), 40)[0])


def test_stream_without_acks_fails_and_the_server_goes_on(peer: Peer) -> None:
    msgs, _ = _stream_synth(peer, skip_first=False, ack=False)
    assert msgs[-1][0] == "/fail" and "no /buffer.ack" in msgs[-1][1][1]
    peer.send("/status")
    assert peer.until("/status.reply")


# ---- latest wins, cancel, progress --------------------------------------------------------------
def test_latest_supersedes_and_cancel_stops_a_hallucination(server: Server) -> None:
    events: list[list[Any]] = []
    with Client(*server.address, timeout=T, subscribe=True,
                on_event=lambda a, args: events.append(args)) as c:
        c.random_z(0, 1)
        c.send("/hallu.z", "long", 64, 0, 1)  # keeps the worker busy
        for i in range(5):
            c.send("/latest", "slider")
            c.send("/synth", f"s{i}", 40)
        fails = [c.expect(lambda m: m[0] == "/fail" and m[1][0] == "/synth") for _ in range(4)]
        assert all(f[1][1] == "superseded" for f in fails)
        _, progress = c.expect(lambda m: m[0] == "/progress")
        assert progress[0] == "/hallu.z" and progress[3] == 64
        assert c.cancel(progress[1]) == 1
        got = c.expect(lambda m: m[1][:1] == ["/hallu.z"] and m[0] in ("/done", "/fail"))
        assert got == ("/fail", ["/hallu.z", "cancelled"])
        assert c.answer("/synth") == ["s4"]
        assert events and events[0][:2] == progress[:2]
        c.sync()
        assert c.status().queue == 0


def test_a_full_queue_answers_busy(server: Server) -> None:
    with Client(*server.address, timeout=T) as c:
        c.random_z(0, 1)
        c.send("/hallu.z", "long", 64, 0, 1)
        for i in range(protocol.MAX_QUEUE):
            c.send("/synth", f"s{i}", 40)
        got = c.expect(lambda m: m[0] == "/fail" and m[1][0] == "/synth")
        assert got[1][1] == "busy"
        assert c.cancel() == protocol.MAX_QUEUE
        c.sync()
        assert c.status().queue == 0


def test_packets_from_outside_the_allowed_networks_are_dropped(
        make_server: ServerFactory, caplog: pytest.LogCaptureFixture) -> None:
    server = make_server()
    with caplog.at_level("WARNING", "ganspace_server"):
        for _ in range(50):
            server._datagram(oscwire.encode("/status"), ("10.1.2.3", 5000))
    assert not server.sessions()
    assert 1 <= sum("dropped a packet from 10.1.2.3" in r.message for r in caplog.records) <= 5


# ---- models, directions, paths ------------------------------------------------------------------
def test_model_reload_failure_keeps_the_old_model(make_server: ServerFactory, root: Path,
                                                  directions: Directions) -> None:
    server = make_server(directions)
    with Client(*server.address, timeout=60) as c:
        c.random_z(0, 1)
        for bad, why in (("broken", "unreadable"), ("../", "outside"), ("/etc", "outside"),
                         ("evil.pkl", "pickle"), ("nothing-here", "no such")):
            with pytest.raises(ServerError, match=why):
                c.load_model(bad)
        st = c.status()
        assert (st.model, st.k, st.layer) == ("tiny", 6, "conv0")
        before = c.synth("a", 40)
        assert c.load_model("tiny2") == ("tiny2", 64000, 16000)
        st = c.status()
        assert st.model == "tiny2" and st.k == 0  # directions of another model are dropped
        after = c.synth("a", 40)
        assert not np.array_equal(before, after)
        with pytest.raises(ServerError, match="computed for model"):
            c.load_directions("dirs.safetensors")
        with pytest.raises(ServerError, match="pickle"):
            c.load_directions("evil.pkl")
        with pytest.raises(ServerError, match="no directions"):
            c.synth_noz("n")


def test_directions_load_and_layers(make_server: ServerFactory, tiny_model: GANSynthModel
                                    ) -> None:
    server = make_server()
    with Client(*server.address, timeout=T, subscribe=True) as c:
        assert c.layers() == tiny_model.layer_names()
        assert c.pitches() == tiny_model.pitches
        assert c.load_directions("dirs.safetensors") == (6, "conv0")
        _, st = c.expect(lambda m: m[0] == "/status.reply")  # broadcast to subscribers
        assert st[5:7] == [6, "conv0"]


def test_quit_only_when_allowed(make_server: ServerFactory) -> None:
    server = make_server(allow_quit=True)
    with Client(*server.address, timeout=T) as c:
        c.call("/quit")
    assert server.wait(5)


def test_non_loopback_needs_allow(tiny_model: GANSynthModel, tmp_path: Path) -> None:
    with pytest.raises(Exception, match="--allow"):
        Server(tiny_model, ServerConfig(host="0.0.0.0", port=0, cache_dir=tmp_path))


def test_file_cache_stays_bounded(make_server: ServerFactory, tmp_path: Path) -> None:
    server = make_server(cache_bytes=600_000)
    with Client(*server.address, timeout=T) as c:
        c.random_z(0, 1)
        notes = c.synth_batch("n", [(0, 40)] * 4)  # all four kept until delivered
        assert len(notes) == 4 and all(np.array_equal(n, notes[0]) for n in notes)
        one = c.synth("one", 40)
    files = sorted(server.config.cache_dir.iterdir())
    assert [f.name.split("-", 1)[1] for f in files] == ["4-n3.wav", "5-one.wav"]
    audio, sr = sf.read(files[-1], dtype="float32")
    assert sr == 16000 and np.array_equal(audio, one)
