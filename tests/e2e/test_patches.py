"""The Pd patches (patches/*.pd) in real headless Pure Data against a real server on a tiny model.

Each test starts `pd -nogui -nosound ... -open tests/e2e/pd/harness.pd -open patches/<patch>.pd`
with fresh ports, drives the patch's controls through their receive names the way a performer would
(the harness forwards `/send <name> args` to `[send <name>]`), records the patch's output
(`[s~ <prefix>-out]`) faster than real time (`; pd fast-forward`) and compares it with what the
server renders itself for the same request (python client, same seeds and coefficients).
A test that needs Pd fails (never skips) when `pd` is missing. Any Pd error line fails the test.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ganspace.space.directions import Directions, save_directions

sys.path.insert(0, str(Path(__file__).resolve().parent / "pd"))
from pdrunner import PdSession, free_udp_port, pd_binary  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PATCHES = ROOT / "patches"
SR = 16000
NOTE = 64000
K = 16


def require_pd() -> str:
    try:
        return pd_binary()
    except RuntimeError as exc:
        pytest.fail(str(exc))


# ---- the server ---------------------------------------------------------------------------------
@dataclass
class Served:
    port: int
    model_dir: Path
    directions: Path
    output: list[str]


def make_directions(model, path: Path) -> Path:
    """Random unit-norm directions for the tiny model's conv0 (K = 16)."""
    h, w, c = model.layer_shape("conv0")
    rng = np.random.default_rng(7)
    comp = rng.standard_normal((K, h, w, c)).astype(np.float32)
    comp /= np.linalg.norm(comp.reshape(K, -1), axis=1)[:, None, None, None]
    stdev = np.linspace(2.0, 0.5, K, dtype=np.float32)
    mean = (0.1 * rng.standard_normal((h, w, c))).astype(np.float32)
    d = Directions("conv0", comp, stdev, stdev**2 / np.sum(stdev**2), mean, model.fingerprint,
                   {"estimator": "test"})
    return save_directions(d, path, dtype="float32")


def server_command() -> list[str]:
    exe = shutil.which("ganspacesynth")
    if exe:
        return [exe]
    return [sys.executable, "-c", "import sys; from ganspace.cli import main; "
            "sys.exit(main(sys.argv[1:]))"]


@pytest.fixture(scope="module")
def server(tiny_model, tiny_model_dir: Path, tmp_path_factory) -> Iterator[Served]:
    """`ganspacesynth serve` on the tiny model with 16 random directions (one per module)."""
    tmp = tmp_path_factory.mktemp("patch-server")
    dirs = make_directions(tiny_model, tmp / "directions" / "tiny_conv0_test.safetensors")
    cmd = server_command() + ["serve", "--model", str(tiny_model_dir), "--directions", str(dirs),
                              "--port", "0", "--cache-dir", str(tmp / "cache"), "--device", "cpu"]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL, env=env)
    output: list[str] = []
    ready = threading.Event()
    port: list[int] = []

    def reader() -> None:
        assert proc.stdout
        for line in proc.stdout:
            output.append(line.rstrip("\n"))
            m = re.search(r"ready on [\d.]+:(\d+)", line)
            if m:
                port.append(int(m.group(1)))
                ready.set()

    threading.Thread(target=reader, daemon=True).start()
    try:
        deadline = time.monotonic() + 120
        while not ready.wait(0.2):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("the server did not start: " + " ".join(cmd) + "\n" +
                            "\n".join(output[-30:]))
        yield Served(port[0], tiny_model_dir, dirs, output)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextmanager
def reference(server: Served):
    """The server's own render: a python client (its own session on the same server)."""
    from ganspace_server.client import Client

    with Client(port=server.port, timeout=60.0) as client:
        yield client


# ---- Pd -----------------------------------------------------------------------------------------
@contextmanager
def open_patch(name: str, prefix: str, server: Served, samplerate: int = SR,
               extra: list[str] | None = None) -> Iterator[PdSession]:
    """Pd running the harness and patches/<name>, connected to the server on fresh ports."""
    require_pd()
    listen = free_udp_port()
    watch = [f"{prefix}-ev", f"{prefix}-in", f"{prefix}-st-error", f"{prefix}-st-conn"]
    pd = PdSession([PATCHES / name], sends=[f"{prefix}-cfg {listen} {server.port}"],
                   samplerate=samplerate, watch=watch + (extra or []))
    try:
        pd.start()
        pd.wait_watch(f"{prefix}-ev", lambda a: a[0] == "connected", timeout=15)
        pd.wait_watch(f"{prefix}-ev", lambda a: a[0] == "status", timeout=15)
        yield pd
        assert not pd.errors(), "Pd reported errors:\n" + "\n".join(pd.errors())
    finally:
        pd.close()


def loaded(pd: PdSession, prefix: str, name: str, since: int, timeout: float = 60) -> tuple:
    """Wait for the player <prefix>-<name> to load a delivery: (array, frames, rate)."""
    ev = pd.wait_watch(f"{prefix}-ev", lambda a: a[0] == "loaded" and a[1] == name,
                       timeout=timeout, since=since)
    return ev[2], int(ev[3]), int(ev[4])


def done(pd: PdSession, prefix: str, cmd: str, since: int, timeout: float = 60) -> tuple:
    ev = pd.wait_watch(f"{prefix}-in", lambda a: a[:2] in (("done", cmd), ("fail", cmd)),
                       timeout=timeout, since=since)
    assert ev[0] == "done", f"{cmd} failed: {ev}"
    return ev[2:]


def expire_sessions(server, timeout: float = 30) -> None:
    """Make an in-process server forget every client now (idle expiry at 0 s), then restore an
    hour's idle time."""
    server.config.session_idle = 0.0
    deadline = time.monotonic() + timeout
    while server.sessions():
        assert time.monotonic() < deadline, "the session did not expire"
        time.sleep(0.02)
    server.config.session_idle = 3600.0


def record(pd: PdSession, tmp: Path, ms: float, name: str = "capture.wav") -> np.ndarray:
    """Render `ms` more of audio at once and return what the capture array holds."""
    pd.fast_forward(ms)
    path = tmp / name
    pd.write_capture(path)
    y, _ = sf.read(path, dtype="float32")
    return y


def best_match(y: np.ndarray, ref: np.ndarray, start: int, lags=range(-3, 4)) -> float:
    """Smallest max-abs difference between ref and y around `start`, over the samples both hold
    (the first few are left out: [tabread4~] reads index 1 for indices below 1)."""
    errs = []
    for lag in lags:
        s = start + lag
        lo, hi = max(4, -s), min(len(ref) - 4, len(y) - s)
        if hi - lo < len(ref) // 2:
            continue
        errs.append(float(np.abs(y[s + lo:s + hi] - ref[lo:hi]).max()))
    assert errs, "nothing to compare"
    return min(errs)


def onset(y: np.ndarray) -> int:
    nz = np.flatnonzero(y)
    assert nz.size, "the patch played nothing (the capture is silent)"
    return int(nz[0])


def tabread4(table: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Pd 0.53's [tabread4~] (4-point interpolation; indices clamped to 1..n-3)."""
    n = len(table)
    i = np.floor(index).astype(np.int64)
    frac = index - i
    lo, hi = i < 1, i > n - 3
    i = np.clip(i, 1, n - 3)
    frac = np.where(lo, 0.0, np.where(hi, 1.0, frac))
    a, b, c, d = table[i - 1], table[i], table[i + 1], table[i + 2]
    cminusb = c - b
    return b + frac * (cminusb - 0.1666667 * (1.0 - frac) * ((d - a - 3.0 * cminusb) * frac +
                                                              (d + 2.0 * a - 3.0 * b)))


# ---- tests --------------------------------------------------------------------------------------
def test_ganspacesynth_synthesize_plays_the_servers_sound(server: Served, tmp_path: Path):
    """Seeded z, a coefficient, a pitch, synthesize: the sound lands in the back array, plays by
    itself at the model's rate and equals the server's own render; a second sound goes to the
    other array while the first one plays; replay works."""
    with open_patch("ganspacesynth.pd", "gss", server, extra=["gss-pitch"]) as pd:
        pd.to("gss-seed", 42)          # seeded z into slot 0
        pd.to("gss-c0", 1.5)
        pd.to("gss-c3", -2.0)
        pd.to("gss-pitch", 40)
        pd.sync()
        pd.capture("gss-out", SR * 12)
        m = pd.mark()
        pd.to("gss-synth")
        array1, frames, rate = loaded(pd, "gss", "snd", m)
        assert (frames, rate) == (NOTE, SR)
        done(pd, "gss", "/synth", m)
        pd.fast_forward(500)           # the first sound has played 0.5 s ...
        # ... when the second one (other z) arrives: it must go to the other array
        pd.to("gss-seed", 43)
        m2 = pd.mark()
        pd.to("gss-synth")
        array2, _, _ = loaded(pd, "gss", "snd", m2)
        assert {array1, array2} == {"gss-snd-0", "gss-snd-1"}, (array1, array2)
        y = record(pd, tmp_path, 4300)

        with reference(server) as ref:
            ref.random_z(0, seed=42)
            ref.set_coefficient({0: 1.5, 3: -2.0})
            ref1 = ref.synth("ref", 40)
            ref.random_z(0, seed=43)
            ref2 = ref.synth("ref", 40)
        peak = float(np.abs(ref1).max())
        s1 = onset(y)
        end = int(np.flatnonzero(y)[-1])
        s2 = end - NOTE + 1
        # the first sound played from its intact array until the second one replaced it ...
        assert s2 - s1 >= SR // 2
        assert best_match(y, ref1[:s2 - s1 - 2], s1) < 1e-5 * peak
        # ... which then played completely
        assert best_match(y, ref2, s2) < 1e-5 * peak

        # pitch outside the model's range is clipped to it (24..84)
        m = pd.mark()
        pd.to("gss-pitch", 99)
        pd.wait_watch("gss-pitch", lambda a: a == ("set", 84.0), since=m)
        done(pd, "gss", "/pitch", m)

        # replay: the same sound again, from the start
        pd.capture("gss-out", SR * 5)
        m = pd.mark()
        pd.to("gss-snd-play")
        pd.wait_watch("gss-ev", lambda a: a[:2] == ("play", "snd"), since=m)
        y2 = record(pd, tmp_path, 4100, "replay.wav")
        assert best_match(y2, ref2, onset(y2)) < 1e-5 * peak


def test_ganspacesynth_slerp_stream_delivery_at_44k(server: Served, tmp_path: Path):
    """Stream delivery (chunks + acks into [array set]) with Pd running at 44.1 kHz: the array
    holds the server's sound exactly, playback lasts 4 s and is the 16 kHz array read through
    [tabread4~]; z slots A and B and slerp give the server's slerp."""
    with open_patch("ganspacesynth.pd", "gss", server, samplerate=44100) as pd:
        m = pd.mark()
        pd.to("gss-stream", 1)
        done(pd, "gss", "/delivery", m)
        for slot, seed in ((1, 5), (2, 6)):          # A = slot 1, B = slot 2 (the defaults)
            pd.to("gss-zslot", slot)
            pd.to("gss-seed", seed)
        pd.to("gss-zslot", 0)
        m = pd.mark()
        pd.to("gss-t", 0.25)                          # slot 0 := slerp(1, 2, 0.25)
        done(pd, "gss", "/z.slerp", m)
        pd.capture("gss-out", 44100 * 6)
        m = pd.mark()
        pd.to("gss-synth")
        array, frames, rate = loaded(pd, "gss", "snd", m)
        assert (frames, rate) == (NOTE, SR)
        assert pd.seen("gss-in", lambda a: a[0] == "buffer.chunk") == []   # not forwarded
        y = record(pd, tmp_path, 4300)
        pd.to("gss-snd-save", str(tmp_path / "array.wav"))
        pd.wait_watch("gss-ev", lambda a: a[0] == "saved", since=m)

        with reference(server) as ref:
            ref.random_z(1, seed=5)
            ref.random_z(2, seed=6)
            ref.slerp_z(0, 1, 2, 0.25)
            want = ref.synth("ref", 32)
        peak = float(np.abs(want).max())
        saved, saved_rate = sf.read(tmp_path / "array.wav", dtype="float64")
        assert saved_rate == SR and len(saved) == NOTE
        assert sf.info(str(tmp_path / "array.wav")).subtype == "PCM_24"
        if peak > 1:    # Pd normalises a fixed-point file when the array peaks above 1
            saved *= peak / np.abs(saved).max()
        assert np.abs(saved - want).max() < 1e-5 * max(1.0, peak)   # 24-bit quantisation
        nz = np.flatnonzero(y)
        assert abs((nz[-1] - nz[0] + 1) - 4 * 44100) <= 2, "plays 4 s at any Pd sample rate"
        s = int(nz[0])
        errs = []
        for d in (-1.0, 0.0, 1.0):
            # the ramp from [vline~] reaches [tabread4~] as float32
            idx = ((np.arange(4 * 44100 - 8) + d) * (SR / 44100)).astype(np.float32)
            errs.append(float(np.abs(y[s:s + len(idx)] - tabread4(want, idx.astype(np.float64)))
                              .max()))
        assert min(errs) < 1e-3 * peak, errs


def test_ganspacesynth_model_and_directions_loading(server: Served):
    """Path entry + load for the model and the directions; a bad path shows the server's /fail in
    the patch's error display."""
    with open_patch("ganspacesynth.pd", "gss", server) as pd:
        m = pd.mark()
        pd.to("gss-model-path", "/nonexistent/model")
        pd.to("gss-model-load")
        shown = pd.wait_watch("gss-st-error", lambda a: a[0] == "set", since=m)
        assert str(shown[1]).startswith("/model.load: "), shown
        pd.wait_watch("gss-in", lambda a: a[:2] == ("fail", "/model.load"), since=m)
        m = pd.mark()
        pd.to("gss-model-path", str(server.model_dir))
        pd.to("gss-model-load")
        name, length, rate = done(pd, "gss", "/model.load", m)
        assert (name, length, rate) == (server.model_dir.name, NOTE, SR)
        m = pd.mark()
        pd.to("gss-dir-path", str(server.directions))
        pd.to("gss-dir-load")
        assert done(pd, "gss", "/directions.load", m) == (float(K), "conv0")
        status = pd.wait_watch("gss-ev", lambda a: a[0] == "status" and a[6] == K, since=m)
        assert status[1:5] == (server.model_dir.name, 61.0, 24.0, 84.0)


def test_ganspacesynth_noz_plays_centre_plus_offsets(server: Served, tmp_path: Path):
    with open_patch("ganspacesynth_noz.pd", "gssn", server) as pd:
        pd.to("gssn-c1", 2.0)
        pd.to("gssn-c10", -1.0)
        pd.to("gssn-pitch", 30)
        pd.sync()
        pd.capture("gssn-out", SR * 6)
        m = pd.mark()
        pd.to("gssn-synth")
        loaded(pd, "gssn", "snd", m)
        y = record(pd, tmp_path, 4300)
        # reset: every slider back to 0 on both sides
        m = pd.mark()
        pd.to("gssn-reset")
        done(pd, "gssn", "/coef.zero", m)
        with reference(server) as ref:
            ref.set_coefficient({1: 2.0, 10: -1.0})
            want = ref.synth_noz("ref", 30)
        assert best_match(y, want, onset(y)) < 1e-5 * float(np.abs(want).max())


def test_halluseq_steps_settings_generate_save(server: Served, tmp_path: Path):
    """HALLU: steps (add copies, prev/next, remove), the display "step N / M" mirrored from the
    server, the six settings, generate (length formula), save as 24-bit WAV, preview, and the
    z-space hallucination."""
    watch = ["hallu-step-n", "hallu-step-m", "hallu-c0-v", "hallu-interp", "hallu-release-v"]
    with open_patch("halluseq.pd", "hallu", server, extra=watch) as pd:
        pd.wait_watch("hallu-in", lambda a: a[:2] == ("done", "/hallu.state"), timeout=10)
        m = pd.mark()
        pd.to("hallu-c0", 1.0)
        pd.to("hallu-c2", 0.5)
        pd.to("hallu-add")                      # step 2 / 2, a copy of step 1
        pd.wait_watch("hallu-step-n", lambda a: a == ("set", 2.0), since=m)
        pd.wait_watch("hallu-step-m", lambda a: a == ("set", 2.0), since=m)
        pd.to("hallu-c0", -1.0)
        settings = {"interp": 3, "spacing": 0.25, "trim": 0.05, "attack": 0.01,
                    "sustain": 0.2, "release": 0.1}
        for k, v in settings.items():
            pd.to(f"hallu-{k}", v)
        m = pd.mark()
        pd.to("hallu-prev")                     # back to step 1: its coefficients are mirrored
        pd.wait_watch("hallu-step-n", lambda a: a == ("set", 1.0), since=m)
        pd.wait_watch("hallu-c0-v", lambda a: a == ("set", 1.0), since=m)
        pd.wait_watch("hallu-release-v", lambda a: abs(a[1] - 0.1) < 1e-6)
        pd.wait_watch("hallu-interp", lambda a: a == ("set", 3.0))

        m = pd.mark()
        pd.to("hallu-generate")
        sounds, frames = done(pd, "hallu", "/hallu", m)[1:]
        array, loaded_frames, rate = loaded(pd, "hallu", "clip", m)
        n = 2 + (2 - 1) * (settings["interp"] - 1)
        seconds = (n - 1) * settings["spacing"] + sum(settings[k] for k in
                                                      ("trim", "attack", "sustain", "release"))
        assert sounds == n
        assert frames == loaded_frames == round(seconds * SR), (frames, seconds * SR)
        path = tmp_path / "hallu.wav"
        m = pd.mark()
        pd.to("hallu-save-path", str(path))
        pd.to("hallu-save")
        pd.wait_watch("hallu-ev", lambda a: a[0] == "saved", since=m)
        info = sf.info(str(path))
        assert (info.subtype, info.samplerate, info.frames) == ("PCM_24", SR, frames)
        clip, _ = sf.read(path, dtype="float64")

        with reference(server) as ref:
            ref.set_coefficient({0: 1.0, 2: 0.5})
            ref.hallu("add")
            ref.set_coefficient({0: -1.0})
            for k, v in settings.items():
                ref.hallu_setting(k, v)
            want = ref.hallucinate("ref")
        assert len(want) == frames
        assert np.abs(clip - want).max() < 1e-5

        # preview of the current step (step 1) plays in the note player
        pd.to("hallu-clip-stop")
        pd.fast_forward(20)        # the harness' [receive~] lags one block behind [send~]
        pd.capture("hallu-out", SR * 6)
        m = pd.mark()
        pd.to("hallu-preview")
        loaded(pd, "hallu", "note", m)
        y = record(pd, tmp_path, 4300)
        with reference(server) as ref:
            ref.set_coefficient({0: 1.0, 2: 0.5})
            note = ref.synth_noz("ref", 32)
        assert best_match(y, note, onset(y)) < 1e-5 * float(np.abs(note).max())

        # z-space hallucination: keypoints + slerp steps, seeded
        m = pd.mark()
        pd.to("hallu-keypoints", 2)
        pd.to("hallu-steps", 1)
        pd.to("hallu-zseed", 9)
        pd.to("hallu-zgen")
        sounds, frames = done(pd, "hallu", "/hallu.z", m)[1:]
        assert sounds == 3
        assert loaded(pd, "hallu", "clip", m)[1] == frames == round(
            ((3 - 1) * 0.25 + 0.05 + 0.01 + 0.2 + 0.1) * SR)

        # remove the current step: 1 / 1
        m = pd.mark()
        pd.to("hallu-remove")
        pd.wait_watch("hallu-step-m", lambda a: a == ("set", 1.0), since=m)
        pd.wait_watch("hallu-step-n", lambda a: a == ("set", 1.0), since=m)


def test_every_patch_and_help_patch_opens_cleanly(server: Served):
    """All patches and help patches open together in one Pd without any error, and each of their
    connections reaches the server."""
    require_pd()
    names = sorted(p.name for p in PATCHES.glob("*.pd"))
    helps = [n for n in names if n.endswith("-help.pd")]
    abstractions = [n for n in names if n.startswith("gss_") and not n.endswith("-help.pd")]
    assert sorted(h.replace("-help.pd", ".pd") for h in helps) == abstractions
    prefixes = ["gss", "gssn", "hallu", "keys", "hconn", "hplay", "hmodel", "hcoef", "hkeys",
                "hpreset"]
    sends = [f"{p}-cfg {free_udp_port()} {server.port}" for p in prefixes]
    sends += ["keys-lo 60", "keys-hi 60"]      # the keyboard's first bank: one note
    with PdSession([PATCHES / n for n in names], sends=sends,
                   watch=[f"{p}-ev" for p in prefixes]) as pd:
        for p in prefixes:
            pd.wait_watch(f"{p}-ev", lambda a: a[0] == "status", timeout=15)
        pd.sync()
        assert not pd.errors(), "Pd reported errors:\n" + "\n".join(pd.errors())
