"""The keyboard (patches/ganspacesynth_keys.pd, gss_keys), presets in the patches and HALLU's rand
step, in real headless Pd against a real server on a tiny model (CPU).

The server is ``ganspacesynth serve --model DIR`` where DIR holds the tiny model and exactly one
directions file (so it also checks that such a folder is served with its directions). Each test
starts Pd with the harness (tests/e2e/pd/harness.pd) and drives the patch through its receive
names. Banks stay small (a few pitches) so a render takes well under a second.

The envelope is set to attack 0, decay 0, level 1, release 0 so that every voice's output is
exactly ``gain x [tabread4~](bank array, rate x (n + 1))``: the captured output is compared with
that, computed here from the server's own render of the same bank (a python client with the same
seed). Note-ons are sent in one OSC bundle with ``/capture``, so the capture starts in the DSP block
of the note-on. Any Pd error line fails a test.
"""

from __future__ import annotations

import json
import os
import re
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

from ganspace_server.client import Client

sys.path.insert(0, str(Path(__file__).resolve().parent / "pd"))
from pdrunner import PdSession, free_udp_port  # noqa: E402
from test_patches import (  # noqa: E402
    PATCHES,
    SR,
    make_directions,
    record,
    require_pd,
    server_command,
    tabread4,
)

KEYS = PATCHES / "ganspacesynth_keys.pd"
EXACT_ENVELOPE = ["keys-attack 0", "keys-decay 0", "keys-level 1", "keys-release 0"]
BLOCK = 64


# ---- the server: a model folder with one directions file ---------------------------------------
@dataclass
class KeysServer:
    port: int
    model_dir: Path
    presets: Path
    output: list[str]


@pytest.fixture(scope="module")
def server(tiny_model, tmp_path_factory) -> Iterator[KeysServer]:
    tmp = tmp_path_factory.mktemp("keys-server")
    model_dir = tiny_model.save(tmp / "tinydirs")
    make_directions(tiny_model, model_dir / "conv0.safetensors")
    presets = tmp / "presets"
    cmd = server_command() + ["serve", "--model", str(model_dir), "--port", "0", "--cache-dir",
                              str(tmp / "cache"), "--presets", str(presets), "--device", "cpu"]
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
        yield KeysServer(port[0], model_dir, presets, output)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


# ---- Pd -----------------------------------------------------------------------------------------
@contextmanager
def open_keys(server: KeysServer, lo: int, hi: int, stream: bool = False,
              watch: list[str] | None = None) -> Iterator[PdSession]:
    """ganspacesynth_keys.pd connected, with the exact envelope and its first bank of lo..hi."""
    require_pd()
    sends = [f"keys-cfg {free_udp_port()} {server.port}", f"keys-lo {lo}", f"keys-hi {hi}",
             *EXACT_ENVELOPE] + (["keys-stream 1"] if stream else [])
    names = ["keys-ev", "keys-in", "keys-st-error", "keys-send", "keys-st-bank", *(watch or [])]
    pd = PdSession([KEYS], sends=sends, samplerate=SR, watch=names)
    try:
        pd.start()
        pd.wait_watch("keys-ev", lambda a: a[0] == "connected", timeout=15)
        bank_ready(pd, 0)
        yield pd
        assert not pd.errors(), "Pd reported errors:\n" + "\n".join(pd.errors())
    finally:
        pd.close()


def bank_ready(pd: PdSession, since: int) -> str:
    """Wait until a new bank plays (keys-ev bank <name>); fail on bankfail."""
    ev = pd.wait_watch("keys-ev", lambda a: a[0] in ("bank", "bankfail") and a[1:] != (
        "cancelled",), timeout=60, since=since)
    assert ev[0] == "bank", f"the bank failed: {ev}"
    return str(ev[1])


def seeded_bank(pd: PdSession, seed: int) -> str:
    """z slot 0 := random z (seed): auto render makes the bank; returns its name."""
    m = pd.mark()
    pd.to("keys-seed", seed)
    return bank_ready(pd, m)


def reference(server: KeysServer, seed: int, lo: int, hi: int) -> dict[int, np.ndarray]:
    """The server's own bank of the same timbre: pitch -> note."""
    with Client(port=server.port, timeout=60.0) as c:
        c.random_z(0, seed=seed)
        bank = c.bank("ref", lo, hi)
    return dict(zip(bank.pitches, bank.audio, strict=True))


def play(pd: PdSession, *notes: tuple[int, int]) -> None:
    """Note events sent together (one logical time)."""
    pd.bundle(*(("/send", "keys-note", k, v) for k, v in notes))


def capture_with(pd: PdSession, frames: int, *notes: tuple[int, int]) -> None:
    """Start capturing keys-out in the DSP block of these note events."""
    m = pd.mark()
    pd.bundle(("/capture", "keys-out", frames), *(("/send", "keys-note", k, v) for k, v in notes))
    pd.wait(lambda a, _: a == "/captured", timeout=5, since=m)


def voice(note: np.ndarray, length: int, rate: float = 1.0, gain: float = 1.0) -> np.ndarray:
    """What one voice outputs from its first sample on: [tabread4~] of the note at the index
    ramp rate x (n + 1) ([vline~] output is float32), silent past the end."""
    idx = (rate * (np.arange(length) + 1.0)).astype(np.float32).astype(np.float64)
    out = gain * tabread4(note, idx)
    out[idx >= len(note)] = 0.0
    return out


def placed(length: int, start: int, signal: np.ndarray) -> np.ndarray:
    out = np.zeros(length)
    n = min(len(signal), length - start)
    out[start:start + n] = signal[:n]
    return out


def first_difference(y: np.ndarray, want: np.ndarray, tol: float, start: int = 0) -> int:
    bad = np.flatnonzero(np.abs(y[start:] - want[start:]) > tol)
    return start + int(bad[0]) if bad.size else len(y)


def sent_between(pd: PdSession, a: int, b: int) -> list[tuple]:
    return [m[2][1:] for m in pd.log[a:b] if m[1] == "/w" and m[2][0] == "keys-send"]


# ---- tests --------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["file", "stream"])
def test_keys_bank_plays_notes_in_one_block_at_the_right_pitch(server: KeysServer,
                                                               tmp_path: Path, mode: str):
    """A bank arrives (file: multi-channel WAVs, stream: acked chunks); keys-note sounds in the
    DSP block of its note-on with nothing sent to the server; a key above the bank plays its top
    note 3 semitones higher; a pitch bend changes a sounding note's rate without a jump."""
    with open_keys(server, 58, 62, stream=mode == "stream") as pd:
        if mode == "stream":
            assert pd.seen("keys-send", lambda a: a == ("delivery", "stream"))
        seeded_bank(pd, 5)
        ref = reference(server, 5, 58, 62)
        assert sorted(ref) == [58, 59, 60, 61, 62]
        peak = max(float(np.abs(a).max()) for a in ref.values())

        # a note of the bank: sound in its first DSP block, exactly the server's note
        m = pd.mark()
        capture_with(pd, SR * 3, (60, 127))
        pd.fast_forward(300)
        pd.to("keys-note", 60, 0)
        y = record(pd, tmp_path, 100, "in-bank.wav")
        assert sent_between(pd, m, pd.mark()) == [], "note events must not reach the server"
        s = int(np.flatnonzero(y)[0])
        assert s < BLOCK, f"note-on to sound: {s} samples (more than one {BLOCK}-sample block)"
        n = int(np.flatnonzero(y)[-1]) + 1 - s
        assert n >= 300 * SR // 1000                         # held until its note-off ...
        assert not y[s + n:].any()                           # ... then silent (release 0)
        assert np.abs(y[s:s + n] - voice(ref[60], n)).max() < 1e-5 * peak

        # key 65, above the bank (58..62): pitch 62 at 2^(3/12); the best-fitting rate of the
        # capture is 3 semitones (its f0 is 2^(3/12) x that of note 62)
        capture_with(pd, SR * 2, (65, 127))
        pd.fast_forward(250)
        pd.to("keys-note", 65, 0)
        y = record(pd, tmp_path, 100, "above.wav")
        s = int(np.flatnonzero(y)[0])
        n = 3000
        errs = {c: float(np.abs(y[s:s + n] - voice(ref[62], n, 2 ** (c / 1200))).max())
                for c in (0, 100, 200, 290, 299, 300, 301, 310, 400)}
        assert min(errs, key=errs.get) == 300, errs
        assert errs[300] < 1e-4 * peak and errs[299] > 10 * errs[300], errs

        # pitch bend +0.5 (one semitone) at note-on, back to 0 while the note sounds: the index
        # continues from where it was at the new rate
        pd.to("keys-bend", 0.5)
        pd.sync()
        capture_with(pd, SR * 2, (59, 127))
        pd.fast_forward(200)
        pd.to("keys-bend", 0)
        pd.fast_forward(200)
        pd.to("keys-note", 59, 0)
        y = record(pd, tmp_path, 100, "bend.wav")
        s = int(np.flatnonzero(y)[0])
        r1 = 2 ** (1 / 12)
        n = 6000
        best = (np.inf, 0)
        frames = len(ref[59])
        for nb in range(BLOCK, n, BLOCK):                  # the bend lands on a block boundary
            # the voice asks [vline~] to reach the note's end in (frames - r1 nb) samples; at a
            # block boundary [vline~] starts that segment from its value one sample on
            start = r1 * (nb + 1)
            slope = (frames - start) / (frames - r1 * nb)
            idx = np.concatenate([r1 * (np.arange(nb) + 1.0),
                                  start + slope * np.arange(1, n - nb + 1.0)])
            want = tabread4(ref[59], idx.astype(np.float32).astype(np.float64))
            best = min(best, (float(np.abs(y[s:s + n] - want).max()), nb))
        # (Pd's control floats are float32: the segment's duration is rounded, so the index
        # after the bend drifts by up to ~1e-3 of a sample over these 3000 samples)
        assert best[0] < 5e-4 * peak, best
        assert best[1] >= 200 * SR // 1000, best
        no_bend = tabread4(ref[59], (r1 * (np.arange(n) + 1.0)).astype(np.float32)
                           .astype(np.float64))
        assert np.abs(y[s:s + n] - no_bend).max() > 100 * best[0]


def test_keys_eight_voices_mix_the_ninth_steals_the_oldest_sustain_holds(server: KeysServer,
                                                                         tmp_path: Path):
    """Eight overlapping notes mix; the ninth note steals the oldest voice (a 3 ms fade, then the
    new note at its velocity's gain); with the sustain pedal down, note-offs hold the notes until
    the pedal is released."""
    with open_keys(server, 54, 62) as pd:
        seeded_bank(pd, 5)
        ref = reference(server, 5, 54, 62)
        capture_with(pd, SR * 6, (55, 127))                  # the oldest note
        pd.fast_forward(100)
        m_voices = pd.mark()
        play(pd, *((k, 127) for k in range(56, 63)))          # seven more, together
        pd.fast_forward(100)
        play(pd, (54, 64))                                    # the ninth
        pd.fast_forward(100)
        pd.to("keys-sustain", 1)
        m_offs = pd.mark()
        play(pd, *((k, 0) for k in range(54, 63)))
        pd.fast_forward(100)
        pd.sync()
        assert not [x for x in pd.log[m_offs:] if x[1] == "/w" and x[2][0] == "keys-ev"
                    and x[2][1] == "voice" and x[2][3] == -1], "the pedal must hold the notes"
        m_up = pd.mark()
        pd.to("keys-sustain", 0)
        y = record(pd, tmp_path, 50)

        starts = [x[2][2:] for x in pd.log[m_voices - 4:m_offs]
                  if x[1] == "/w" and x[2][0] == "keys-ev" and x[2][1] == "voice"
                  and x[2][3] >= 0]
        voices = [int(v) for v, _ in starts]
        assert len(voices) == 9 and sorted(voices[:8]) == list(range(1, 9)), starts
        assert voices[8] == voices[0], f"the ninth note must take the oldest voice: {starts}"
        freed = [x for x in pd.log[m_up:] if x[1] == "/w" and x[2][0] == "keys-ev"
                 and x[2][1] == "voice" and x[2][3] == -1]
        assert len(freed) == 8, freed

        peak = float(np.abs(y).max())
        tol = 1e-4 * peak
        length = len(y)
        s1 = int(np.flatnonzero(y)[0])
        want = placed(length, s1, voice(ref[55], length))
        s2 = first_difference(y, want, tol, s1 + 1)           # the seven notes start
        for k in range(56, 63):
            want += placed(length, s2, voice(ref[k], length))
        s9 = first_difference(y, want, tol, s2 + 1)           # the ninth: the oldest fades
        assert s2 - s1 >= 100 * SR // 1000 and s9 - s2 >= 100 * SR // 1000
        assert s9 % BLOCK == s1 % BLOCK                      # note events land on block edges
        fade = 3 * SR // 1000
        old = placed(length, s1, voice(ref[55], length))
        rest = want - old
        f = slice(s9, s9 + fade - 2)                         # (the ninth starts at its end)
        assert (np.abs(y[f] - rest[f]) <= np.abs(old[f]) + tol).all()
        g = (64 / 127) ** 2
        end = int(np.flatnonzero(y)[-1]) + 1                 # the pedal's release
        assert end - s9 >= 200 * SR // 1000, "the pedal held the notes after their note-offs"
        errs = {}
        for lag in (-1, 0, 1):
            want = rest + placed(length, s9 + fade + lag, voice(ref[54], length, gain=g))
            errs[lag] = float(np.abs(y[s9 + fade + 2:end] - want[s9 + fade + 2:end]).max())
        assert min(errs.values()) < tol, errs               # the oldest is gone, the ninth plays
        assert not y[end:].any()


def test_keys_bank_swap_leaves_sounding_notes_unbroken(server: KeysServer, tmp_path: Path):
    """A note held on one bank keeps playing exactly while a new bank is loaded into the other
    arrays and swapped in; new notes play the new bank; a render that needs the held note's bank
    again fades that note out (5 ms) before anything is written to it."""
    ref5, ref6 = reference(server, 5, 60, 61), reference(server, 6, 60, 61)
    with open_keys(server, 60, 61) as pd:
        first = seeded_bank(pd, 5)
        capture_with(pd, SR * 14, (48, 127))                 # pitch 60 an octave down: 8 s
        pd.fast_forward(100)
        second = seeded_bank(pd, 6)                          # rendered while the note sounds
        assert second != first
        play(pd, (61, 127))                                  # the new bank
        pd.fast_forward(300)
        m = pd.mark()
        third = seeded_bank(pd, 7)                           # needs the held note's bank
        assert third == first
        pd.fast_forward(100)
        events = [x[2] for x in pd.log[m:] if x[1] == "/w"]
        freed = [i for i, e in enumerate(events) if e[:2] == ("keys-ev", "voice") and e[3] == -1]
        begin = [i for i, e in enumerate(events) if e[:2] == ("keys-in", "bank.begin")]
        assert freed and begin and freed[0] < begin[0], \
            f"the held note's bank was written while it played: {events}"
        play(pd, (48, 0), (61, 0))
        y = record(pd, tmp_path, 50)

        length = len(y)
        peak = float(np.abs(y).max())
        tol = 1e-4 * peak
        s1 = int(np.flatnonzero(y)[0])
        held = placed(length, s1, voice(ref5[60], length, rate=0.5))
        s2 = first_difference(y, held, tol, s1 + 1)
        assert s2 - s1 >= 100 * SR // 1000                  # the swap came between the notes
        new = placed(length, s2, voice(ref6[61], length))
        kill = first_difference(y, held + new, tol, s2 + 1)
        # unbroken through the swap: exact from the note-on to the fade
        assert kill - s2 >= 300 * SR // 1000
        fade = 5 * SR // 1000
        f = slice(kill, kill + fade)
        assert (np.abs(y[f] - new[f]) <= np.abs(held[f]) + tol).all()
        end = int(np.flatnonzero(y)[-1]) + 1
        assert np.abs(y[kill + fade + 1:end] - new[kill + fade + 1:end]).max() < tol


def test_keys_timbre_pad_auto_render_and_presets(server: KeysServer):
    """The timbre pad moves two coefficient sliders (directions mode) or slerps four corner z
    slots (corners mode), each move rendering a bank with a visible rendering state; presets
    save the patch's session (a JSON file with the model fingerprint), load it back (the sliders
    follow), load coefficients only, and refuse names that are not plain words."""
    with open_keys(server, 60, 60, watch=["keys-c0-v", "keys-c1-v"]) as pd:
        m = pd.mark()
        pd.to("keys-pad", 0.75, 0.25)                        # x-dir 0, y-dir 1, range 3
        pd.wait_watch("keys-c0-v", lambda a: a == ("set", 1.5), since=m)
        pd.wait_watch("keys-c1-v", lambda a: a == ("set", -1.5), since=m)
        bank_ready(pd, m)
        shown = [x[2][2] for x in pd.log[m:] if x[1] == "/w" and x[2][0] == "keys-st-bank"]
        assert shown[0] == "rendering..." and shown[-1] == "ready", shown
        assert any(str(s).startswith("rendering:") for s in shown), shown
        assert len([x for x in pd.log[m:] if x[1] == "/w" and x[2][:2] == ("keys-send",
                                                                            "bank")]) == 1

        m = pd.mark()
        pd.to("keys-pad-mode", 1)
        pd.to("keys-pad", 0.25, 1)
        bank_ready(pd, m)
        slerps = [x[2][1:] for x in pd.log[m:] if x[1] == "/w"
                  and x[2][:2] == ("keys-send", "z.slerp")]
        assert slerps[-3:] == [("z.slerp", 62.0, 1.0, 2.0, 0.25), ("z.slerp", 63.0, 3.0, 4.0,
                                                                  0.25),
                               ("z.slerp", 0.0, 62.0, 63.0, 1.0)], slerps

        m = pd.mark()
        pd.to("keys-preset-name", "pad_1")
        pd.to("keys-preset-save")
        pd.wait_watch("keys-ev", lambda a: a == ("preset-saved", "pad_1"), since=m)
        data = json.loads((server.presets / "pad_1.json").read_text())
        assert data["steps"][0][:2] == [1.5, -1.5] and data["directions"]["layer"] == "conv0"
        assert len(data["model"]["fingerprint"]) == 16
        m = pd.mark()
        pd.to("keys-c0", 0)
        pd.to("keys-preset-load")
        ev = pd.wait_watch("keys-ev", lambda a: a[0] == "preset", since=m)
        assert ev[1:3] == ("pad_1", "all")
        pd.wait_watch("keys-c0-v", lambda a: a == ("set", 1.5), since=m)
        bank_ready(pd, m)                                    # the loaded timbre is rendered

        m = pd.mark()
        pd.to("keys-preset-coef", 1)
        pd.to("keys-preset-load")
        pd.wait_watch("keys-ev", lambda a: a[:3] == ("preset", "pad_1", "coef"), since=m)
        pd.to("keys-preset-list")
        pd.wait_watch("keys-in", lambda a: a[:2] == ("done", "/preset.list") and "pad_1" in a,
                      since=m)
        for bad in ("../pad", "..pad"):
            m = pd.mark()
            pd.to("keys-preset-name", bad)
            pd.to("keys-preset-save")
            shown = pd.wait_watch("keys-st-error", lambda a: "/preset.save" in str(a[1]),
                                  since=m)
            assert re.search(r"plain words|may only hold", str(shown[1])), shown
        assert not (server.presets / "..pad.json").exists()
        assert not (server.presets.parent / "pad.json").exists()


def test_presets_in_ganspacesynth_and_rand_step_in_halluseq(server: KeysServer):
    """ganspacesynth.pd saves and loads a preset (its pitch box and sliders follow); halluseq.pd's
    rand step draws the current step's coefficients, reproducibly with a seed."""
    require_pd()
    sends = [f"gss-cfg {free_udp_port()} {server.port}",
             f"hallu-cfg {free_udp_port()} {server.port}"]
    watch = ["gss-ev", "gss-in", "gss-pitch", "gss-c0-v", "hallu-ev", "hallu-in"]
    with PdSession([PATCHES / "ganspacesynth.pd", PATCHES / "halluseq.pd"], sends=sends,
                   samplerate=SR, watch=watch) as pd:
        for p in ("gss", "hallu"):
            pd.wait_watch(f"{p}-ev", lambda a: a[0] == "status", timeout=15)
        m = pd.mark()
        pd.to("gss-pitch", 40)
        pd.to("gss-c0", 1.0)
        pd.to("gss-preset-name", "lead")
        pd.to("gss-preset-save")
        pd.wait_watch("gss-ev", lambda a: a == ("preset-saved", "lead"), since=m)
        pd.to("gss-pitch", 50)
        pd.to("gss-c0", 0)
        m = pd.mark()
        pd.to("gss-preset-load")
        assert pd.wait_watch("gss-ev", lambda a: a[0] == "preset", since=m)[1:4] == (
            "lead", "all", 40.0)
        pd.wait_watch("gss-c0-v", lambda a: a == ("set", 1.0), since=m)
        pd.wait_watch("gss-in", lambda a: a == ("done", "/pitch", 40.0), since=m)

        def drawn(since: int) -> np.ndarray:
            pd.wait_watch("hallu-in", lambda a: a[:2] == ("done", "/hallu.rand"), since=since)
            coefs = {int(a[1]): a[2] for a in (x[2][1:] for x in pd.log[since:]
                                                if x[1] == "/w" and x[2][0] == "hallu-in")
                     if a[0] == "hallu.coef"}
            return np.array([coefs[i] for i in range(16)], np.float32)

        pd.to("hallu-rand-range", 1.5)
        pd.to("hallu-rand-seed", 7)
        m = pd.mark()
        pd.to("hallu-rand")
        first = drawn(m)
        want = np.random.default_rng(7).uniform(-1.5, 1.5, 16).astype(np.float32)
        assert np.allclose(first, want, atol=1e-6), (first, want)
        m = pd.mark()
        pd.to("hallu-add")
        pd.wait_watch("hallu-in", lambda a: a[:2] == ("done", "/hallu.add"), since=m)
        pd.to("hallu-c0", 0)
        m = pd.mark()
        pd.to("hallu-rand")
        assert np.array_equal(drawn(m), first)
        pd.to("hallu-rand-seed", 0)                           # fresh
        m = pd.mark()
        pd.to("hallu-rand")
        assert not np.array_equal(drawn(m), first)
        assert not pd.errors(), "Pd reported errors:\n" + "\n".join(pd.errors())
