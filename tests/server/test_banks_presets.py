"""Banks (/bank, /bank.source), presets (/preset.*) and HALLU rand step (/hallu.rand), against
the in-process server on loopback with tiny models.

Every wait has a time limit, so a broken server fails a test instead of hanging it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from ganspace.engine.model import GANSynthModel, random_model
from ganspace.space.directions import Directions
from ganspace_server import delivery, protocol
from ganspace_server.client import Client
from ganspace_server.config import ServerConfig
from ganspace_server.connection import ServerError
from ganspace_server.jobs import Result
from ganspace_server.server import Server
from ganspace_server.session import Session

T = 30.0  # seconds any single answer may take
K = 6


def _directions(model: GANSynthModel, seed: int = 0, layer: str = "conv0") -> Directions:
    h, w, c = model.layer_shape(layer)
    rng = np.random.default_rng(seed)
    comp = rng.standard_normal((K, h * w * c)).astype(np.float32)
    comp /= np.linalg.norm(comp, axis=1, keepdims=True)
    stdev = np.linspace(2.0, 1.0, K).astype(np.float32)
    mean = (0.1 * rng.standard_normal((h, w, c))).astype(np.float32)
    return Directions(layer, comp.reshape(K, h, w, c), stdev, stdev**2 / (stdev**2).sum(), mean,
                      model.fingerprint, {"estimator": "test"})


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, tiny_model: GANSynthModel) -> Path:
    """A model root holding the tiny model."""
    root = tmp_path_factory.mktemp("root")
    tiny_model.save(root / "tiny")
    return root


@pytest.fixture
def make_server(tiny_model: GANSynthModel, root: Path, tmp_path: Path
                ) -> Iterator[Callable[..., Server]]:
    """Start servers (closed at teardown) on free ports; they share one presets folder."""
    started: list[Server] = []

    def make(model: GANSynthModel = tiny_model, directions: Directions | None = None,
             **kw: Any) -> Server:
        cfg = ServerConfig(port=0, model_roots=[root], cache_dir=tmp_path / f"cache{len(started)}",
                           ack_timeout=0.1, ack_tries=3, presets_dir=tmp_path / "presets")
        for k, v in kw.items():
            setattr(cfg, k, v)
        s = Server(model, cfg, "tiny", directions)
        s.start()
        started.append(s)
        return s

    yield make
    for s in started:
        s.close()


@pytest.fixture(scope="module")
def dirs(tiny_model: GANSynthModel) -> Directions:
    return _directions(tiny_model)


# ---- banks --------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["file", "stream"])
def test_bank_holds_the_timbre_at_every_pitch_of_the_range(
        make_server: Callable[..., Server], tiny_model: GANSynthModel, dirs: Directions,
        mode: str) -> None:
    server = make_server(directions=dirs)
    with Client(*server.address, timeout=T, delivery=mode) as c:
        c.random_z(3, seed=5)
        c.set_coefficient({0: 1.5, 2: -0.5})
        c.set_bank_source(3)
        bank = c.bank("kb", 40, 49)
        assert bank.pitches == list(range(40, 50)) and bank.sample_rate == 16000
        z = np.repeat(tiny_model.random_z(1, 5), 10, axis=0)
        want = tiny_model.generate(z, bank.pitches, dirs, np.array([1.5, 0, -0.5], np.float32))
        assert bank.audio.dtype == np.float32 and np.array_equal(bank.audio, want)
        assert bank.keys == [40] * 41 + list(range(41, 50)) + [49] * 78

        c.set_bank_source(-1)                                   # noz: mean + coefficients
        noz = c.bank("kb", 84, 127)
        assert noz.pitches == [84]
        want = tiny_model.generate(None, [84], dirs, np.array([1.5, 0, -0.5], np.float32))
        assert np.array_equal(noz.audio, want)


def test_a_bank_file_is_one_wav_per_64_channels_and_a_stream_never_spans_two_notes(
        tmp_path: Path) -> None:
    """BankResult.deliver with a recording outlet: 70 notes -> WAVs of 64 and 6 channels;
    a stream of notes of 5000 frames is cut at every note boundary."""
    audio = np.arange(70 * 5000, dtype=np.float32).reshape(70, 5000) / 1e6
    pitches = list(range(20, 90))
    sent: list[tuple[str, list[Any]]] = []

    def send(data: bytes, to: tuple[str, int]) -> None:
        from ganspace_server import oscwire
        address, args = next(oscwire.parse(data))
        sent.append((address, args))
        if address == "/buffer.chunk":
            session.ack(args[0], args[1])

    session = Session(("127.0.0.1", 1), ("127.0.0.1", 1), 60)
    cache = delivery.FileCache(tmp_path / "cache", 2**30)
    result = delivery.BankResult([], 16000, ("b",), name="b", pitches=pitches, audio=audio)
    assert isinstance(result, Result)
    result.deliver(delivery.Outlet(send, session, "file", cache, 0.1, 3, lambda: False))
    assert sent[0] == ("/bank.begin", ["b", 5000, 16000, *pitches])
    files = [args for address, args in sent if address == "/bank.file"]
    assert [(f[2], f[3]) for f in files] == [(0, 64), (64, 6)]
    for _, path, first, count in files:
        data, sr = sf.read(path, dtype="float32", always_2d=True)
        assert sr == 16000 and np.array_equal(data.T, audio[first:first + count])
    assert sent[-1] == ("/bank.keys", ["b", *([20] * 21), *range(21, 90), *([89] * 38)])

    sent.clear()
    result.deliver(delivery.Outlet(send, session, "stream", cache, 0.1, 3, lambda: False))
    chunks = [(args[1], len(args) - 2) for address, args in sent if address == "/buffer.chunk"]
    assert chunks[:3] == [(0, 4000), (4000, 1000), (5000, 4000)]
    assert all(off // 5000 == (off + n - 1) // 5000 for off, n in chunks)
    assert sum(n for _, n in chunks) == audio.size
    assert [a for a, _ in sent if a != "/buffer.chunk"] == [
        "/bank.begin", "/buffer.begin", "/buffer.end", "/bank.keys"]


def test_bank_latest_wins_progress_and_cancel(make_server: Callable[..., Server]) -> None:
    server = make_server()
    events: list[list[Any]] = []
    with Client(*server.address, timeout=T, subscribe=True,
                on_event=lambda a, args: events.append(args)) as c:
        c.random_z(0, seed=1)
        c.send("/hallu.z", "busy", 2, 3)                   # keeps the worker busy ...
        for lo in (30, 40, 50):                            # ... while three banks wait
            c.send("/bank", "kb", lo, lo + 1)
        got = [c.expect(lambda m: m[0] in ("/done", "/fail") and m[1][0] == "/bank")
               for _ in range(3)]
        assert [m[0] for m in got] == ["/fail", "/fail", "/done"]
        assert [m[1][1] for m in got[:2]] == ["superseded", "superseded"]
        assert got[2][1][1:] == ["kb", 50, 51]
        bank_events = [e for e in events if e[0] == "/bank"]
        assert bank_events[0][2:] == [0, 2] and bank_events[-1][2:] == [2, 2]

        c.drain()
        c.send("/hallu.z", "busy", 2, 3)
        c.send("/bank", "kb")
        c.send("/cancel")
        got = [c.expect(lambda m: m[0] in ("/done", "/fail") and m[1][0] in ("/bank", "/hallu.z"))
               for _ in range(2)]
        assert sorted(m[1][1] for m in got) == ["cancelled", "cancelled"]


@pytest.mark.parametrize("args,delivery_mode,reason", [
    (["kb", 50, 40], "file", "lo (50) is above hi (40)"),
    (["kb", 100, 127], "file", "no pitch of this model in 100..127 (it knows 24-84)"),
    (["kb", 0, 128], "file", "argument hi must be in 0..127"),
    (["k/b"], "file", "argument name may only hold"),
    (["kb"], "play", "a bank needs file or stream delivery"),
])
def test_bank_refuses_bad_requests(make_server: Callable[..., Server], args: list[Any],
                                   delivery_mode: str, reason: str) -> None:
    with Client(*make_server().address, timeout=T, delivery=delivery_mode) as c:
        c.random_z(0, seed=1)
        with pytest.raises(ServerError, match=re.escape(reason)):
            c.call("/bank", *args)


def test_bank_needs_a_filled_slot_and_noz_needs_directions(
        make_server: Callable[..., Server]) -> None:
    with Client(*make_server().address, timeout=T) as c:
        with pytest.raises(ServerError, match="z slot 0 is empty"):
            c.bank("kb", 40, 40)
        c.set_bank_source(-1)
        with pytest.raises(ServerError, match="no directions loaded"):
            c.bank("kb", 40, 40)
        with pytest.raises(ServerError, match=r"argument zslot must be in -1\.\.63"):
            c.set_bank_source(64)


# ---- presets ------------------------------------------------------------------------------------
def _state(c: Client) -> tuple[Any, ...]:
    st = c.hallu_state()
    return (c.get_z(0).tolist(), c.get_z(5).tolist(), st.index, st.count, st.settings,
            c.get_coefficients(0, 8).tolist())


def test_presets_round_trip_and_list(make_server: Callable[..., Server], dirs: Directions,
                                     tmp_path: Path) -> None:
    server = make_server(directions=dirs)
    with Client(*server.address, timeout=T) as c:
        c.random_z(0, seed=1)
        c.random_z(5, seed=2)
        c.set_coefficient({0: 1.0, 4: -2.5})
        c.hallu("add")
        c.set_coefficient({1: 0.75})
        c.hallu_setting("spacing", 0.25)
        c.hallu_setting("interp", 7)
        c.set_pitch(47)
        c.set_bank_source(5)
        before = _state(c)
        c.save_preset("warm_pad-1")
        c.save_preset("b")
        assert c.presets() == ["b", "warm_pad-1"]
        data = json.loads((tmp_path / "presets" / "warm_pad-1.json").read_text())
        assert data["model"]["fingerprint"] == server.state.model.fingerprint
        assert data["directions"] == {"layer": "conv0", "count": K}
        assert len(data["steps"]) == 2 and len(data["steps"][0]) == 5   # up to the last set one

    with Client(*server.address, timeout=T) as c:               # a fresh session
        c.random_z(0, seed=9)
        c.random_z(5, seed=9)
        assert _state(c) != before
        assert c.load_preset("warm_pad-1") == (47, 5)
        assert _state(c) == before
        synth_after = c.synth("s", 47, 5)
    with Client(*server.address, timeout=T) as c:
        c.random_z(5, seed=2)
        c.set_coefficient({1: 0.75, 0: 1.0, 4: -2.5})
        assert np.array_equal(c.synth("s", 47, 5), synth_after)


@pytest.mark.parametrize("name", ["../x", "a.b", "a/b", "x" * 65, "é", ".hidden"])
def test_preset_names_are_plain_words(make_server: Callable[..., Server], name: str,
                                      tmp_path: Path) -> None:
    with Client(*make_server().address, timeout=T) as c:
        for cmd in ("/preset.save", "/preset.load"):
            with pytest.raises(ServerError):
                c.call(cmd, name)
    assert not (tmp_path / "presets").exists() or not any((tmp_path / "presets").iterdir())


def test_a_preset_refuses_another_model_unless_coefficients_only(
        make_server: Callable[..., Server]) -> None:
    first = make_server()
    with Client(*first.address, timeout=T) as c:
        c.random_z(0, seed=1)
        c.set_coefficient({2: 1.25})
        c.set_pitch(30)
        c.save_preset("p")
    other = make_server(model=random_model(seed=1))
    with Client(*other.address, timeout=T) as c:
        c.random_z(0, seed=3)
        z = c.get_z(0)
        with pytest.raises(ServerError, match="was made for model tiny .* load only its "
                           "coefficients with /preset.load p coef"):
            c.load_preset("p")
        assert c.get_coefficients(0, 4).tolist() == [0, 0, 0, 0]   # nothing changed
        c.load_preset("p", "coef")
        assert c.get_coefficients(0, 4).tolist() == [0, 0, 1.25, 0]
        assert np.array_equal(c.get_z(0), z)                       # only coefficients loaded


def test_a_preset_refuses_other_directions_and_damaged_files(
        make_server: Callable[..., Server], dirs: Directions, tmp_path: Path) -> None:
    with Client(*make_server(directions=dirs).address, timeout=T) as c:
        c.set_coefficient({0: 1.0})
        c.save_preset("withdirs")
    folder = tmp_path / "presets"
    (folder / "broken.json").write_text("{not json")
    good = json.loads((folder / "withdirs.json").read_text())
    (folder / "huge.json").write_text(json.dumps(good | {"pitch": 1000}))
    (folder / "nan.json").write_text(json.dumps(good).replace("1.0", "NaN", 1))
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps(good))
    (folder / "link.json").symlink_to(outside)
    with Client(*make_server().address, timeout=T) as c:
        with pytest.raises(ServerError, match="made with directions of layer conv0, this "
                           "server has none loaded"):
            c.load_preset("withdirs")
        for name, reason in (("broken", "not readable JSON"), ("huge", "pitch must be"),
                             ("nan", "finite numbers"), ("link", "not a file of the presets"),
                             ("missing", "no preset missing")):
            with pytest.raises(ServerError, match=reason):
                c.load_preset(name)


def test_presets_are_bounded(make_server: Callable[..., Server], tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(protocol, "MAX_PRESETS", 2)
    with Client(*make_server().address, timeout=T) as c:
        c.save_preset("a")
        c.save_preset("b")
        c.save_preset("b")                                  # replacing one is fine
        with pytest.raises(ServerError, match="already holds 2 presets"):
            c.save_preset("c")
    assert sorted(p.name for p in (tmp_path / "presets").iterdir()) == ["a.json", "b.json"]


# ---- HALLU rand step ----------------------------------------------------------------------------
def test_hallu_rand_is_reproducible_with_a_seed(make_server: Callable[..., Server],
                                                dirs: Directions) -> None:
    with Client(*make_server(directions=dirs).address, timeout=T) as c:
        c.set_coefficient({10: 3.0})
        c.hallu_rand(1.5, 4, seed=7)
        first = c.get_coefficients(0, 16)
        want = np.random.default_rng(7).uniform(-1.5, 1.5, 4).astype(np.float32)
        assert np.array_equal(first[:4], want) and not first[4:].any()
        c.hallu("add")
        c.hallu_rand(1.5, 4, seed=7)
        assert np.array_equal(c.get_coefficients(0, 16), first)
        c.hallu_rand(1.5, 4)                                # fresh
        assert not np.array_equal(c.get_coefficients(0, 16), first)
        c.hallu_rand(2.0, 100, seed=1)                      # at most K directions
        got = c.get_coefficients(0, 16)
        assert np.count_nonzero(got) == K and np.abs(got).max() <= 2.0
        state = c.hallu_state()
        assert (state.index, state.count) == (1, 2)
