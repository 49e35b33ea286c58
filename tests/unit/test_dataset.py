"""Dataset tools: chop, pad, make/load, and the synthetic default training set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ganspace.cli import main
from ganspace.engine.audio import AUDIO_LENGTH, SAMPLE_RATE
from ganspace.errors import InputError
from ganspace.train import synthdata
from ganspace.train.dataset import chop, load_dataset, make_dataset, pad, resample
from ganspace.train.evaluate import attack_time, decay_time, estimate_f0, spectral_centroid


def sine(freq: float, seconds: float, rate: int = SAMPLE_RATE, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write(path: Path, audio: np.ndarray, rate: int = SAMPLE_RATE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio, rate, subtype="FLOAT" if path.suffix == ".wav" else "PCM_24")
    return path


def test_chop_counts_hop_and_content(tmp_path: Path) -> None:
    ramp = np.linspace(-0.9, 0.9, int(10.5 * SAMPLE_RATE)).astype(np.float32)
    src = write(tmp_path / "in" / "long take.wav", ramp)
    out = chop([src], tmp_path / "out", pitch=40, hop=1.0)
    # floor((168000 - 64000) / 16000) + 1 = 7 chunks
    assert [p.name for p in out] == [f"long-take-{i:05d}_40.wav" for i in range(7)]
    for i, p in enumerate(out):
        data, rate = sf.read(str(p), dtype="float32")
        assert rate == SAMPLE_RATE and data.shape == (AUDIO_LENGTH,)
        np.testing.assert_array_equal(data, ramp[i * SAMPLE_RATE : i * SAMPLE_RATE + AUDIO_LENGTH])
    half = chop([src], tmp_path / "half", hop=0.5)
    assert len(half) == 14 and half[0].name.endswith("_32.wav")


def test_chop_resamples_short_and_silent(tmp_path: Path) -> None:
    stereo = np.stack([sine(440.0, 6.0, 44100), sine(440.0, 6.0, 44100)], axis=1)
    src = write(tmp_path / "cd.wav", stereo, 44100)
    out = chop([src], tmp_path / "out")
    assert len(out) == 3  # 96000 samples at 16 kHz -> floor(32000 / 16000) + 1
    data, rate = sf.read(str(out[0]), dtype="float32")
    assert rate == SAMPLE_RATE and data.ndim == 1
    assert abs(estimate_f0(data)[0] - 440.0) < 0.5
    short = write(tmp_path / "short.wav", sine(220.0, 2.0))
    (one,) = chop([short], tmp_path / "short")
    data, _ = sf.read(str(one), dtype="float32")
    assert data.shape == (AUDIO_LENGTH,) and not data[2 * SAMPLE_RATE :].any()
    quiet = np.concatenate([np.zeros(5 * SAMPLE_RATE, np.float32), sine(220.0, 4.0)])
    kept = chop([write(tmp_path / "quiet.wav", quiet)], tmp_path / "quiet")
    # chunks 0..5; 0 and 1 lie in the silence and are dropped, indices keep counting
    assert [p.name for p in kept] == [f"quiet-{i:05d}_32.wav" for i in range(2, 6)]


def test_chop_refuses_overwrite_and_bad_args(tmp_path: Path) -> None:
    src = write(tmp_path / "a.wav", sine(220.0, 5.0))
    chop([src], tmp_path / "out")
    with pytest.raises(InputError, match="refusing to overwrite"):
        chop([src], tmp_path / "out")
    with pytest.raises(InputError, match="hop"):
        chop([src], tmp_path / "x", hop=0.0)
    with pytest.raises(InputError, match="MIDI"):
        chop([src], tmp_path / "x", pitch=128)
    with pytest.raises(InputError, match="cannot read"):
        chop([write(tmp_path / "a.wav", sine(1, 1)).with_name("missing.wav")], tmp_path / "y")


def test_pad_normalises_pads_and_trims(tmp_path: Path) -> None:
    bell = write(tmp_path / "in" / "bell_60.wav", sine(261.6, 1.0, 22050, amp=0.2), 22050)
    long = write(tmp_path / "in" / "drone.wav", sine(100.0, 5.0, amp=0.3))
    (b,) = pad([bell], tmp_path / "out")
    data, rate = sf.read(str(b), dtype="float32")
    assert b.name == "bell_60.wav" and rate == SAMPLE_RATE and data.shape == (AUDIO_LENGTH,)
    assert np.max(np.abs(data)) == pytest.approx(1.0, abs=1e-6)
    assert not data[SAMPLE_RATE + 10 :].any()
    (d,) = pad([long], tmp_path / "out2", pitch=43, peak=0.5)
    data, _ = sf.read(str(d), dtype="float32")
    assert d.name == "drone_43.wav" and data.shape == (AUDIO_LENGTH,)
    assert np.max(np.abs(data)) == pytest.approx(0.5, abs=1e-6)
    with pytest.raises(InputError, match="give a pitch"):
        pad([long], tmp_path / "out3")
    with pytest.raises(InputError, match="silent"):
        pad([write(tmp_path / "z_30.wav", np.zeros(100, np.float32))], tmp_path / "out4")
    with pytest.raises(InputError, match="refusing"):
        pad([bell], tmp_path / "out")


def test_resample_keeps_frequency() -> None:
    y = resample(sine(1000.0, 1.0, 48000), 48000)
    assert len(y) == SAMPLE_RATE and y.dtype == np.float32
    assert abs(1200 * np.log2(estimate_f0(np.tile(y, 2))[0] / 1000.0)) < 5.0


def make_folder(folder: Path, names_pitches: list[tuple[str, int]]) -> dict[str, np.ndarray]:
    notes = {}
    for name, pitch in names_pitches:
        audio = sine(110.0 * (1 + len(notes)), 4.0)
        write(folder / f"{name}_{pitch}.wav", audio)
        notes[f"{name}_{pitch}"] = audio
    return notes


def test_make_dataset_writes_audio_index_and_meta(tmp_path: Path) -> None:
    notes = make_folder(tmp_path / "wavs", [("flute", 60), ("flute", 62), ("my_organ", 48)])
    (tmp_path / "wavs" / "README.txt").write_text("ignored")
    ds = make_dataset(tmp_path / "wavs", tmp_path / "ds")
    assert ds.names == ["flute_60", "flute_62", "my_organ_48"]
    assert ds.pitch_set == [48, 60, 62]
    np.testing.assert_array_equal(ds.labels(), [1, 2, 0])
    for i, name in enumerate(ds.names):
        np.testing.assert_array_equal(ds.audio[i], notes[name])
    meta = json.loads((tmp_path / "ds" / "meta.json").read_text())
    assert meta["my_organ_48"] == {"pitch": 48, "instrument_str": "my_organ",
                                   "note_str": "my_organ_48"}
    assert set(meta) == set(notes)
    index = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert index["count"] == 3 and index["pitches"] == [48, 60, 62]
    again = load_dataset(tmp_path / "ds")
    assert again.names == ds.names and again.audio.shape == (3, AUDIO_LENGTH)
    with pytest.raises(InputError, match="refusing to overwrite"):
        make_dataset(tmp_path / "wavs", tmp_path / "ds")


def test_make_dataset_reports_every_problem(tmp_path: Path) -> None:
    folder = tmp_path / "wavs"
    make_folder(folder, [("ok", 60)])
    write(folder / "fast_60.wav", sine(440.0, 4.0, 22050), 22050)
    write(folder / "short_61.wav", sine(440.0, 3.0))
    write(folder / "stereo_62.wav", np.stack([sine(440.0, 4.0)] * 2, axis=1))
    write(folder / "noname.wav", sine(440.0, 4.0))
    write(folder / "high_200.wav", sine(440.0, 4.0))
    with pytest.raises(InputError) as err:
        make_dataset(folder, tmp_path / "ds")
    msg = str(err.value)
    assert "6 problem(s)" in msg
    for needle in ("fast_60.wav: 22050 Hz", "fast_60.wav: 88200 frames",
                   "short_61.wav: 48000 frames", "stereo_62.wav: 2 ch", "noname.wav: name",
                   "high_200.wav: name"):
        assert needle in msg
    assert not (tmp_path / "ds").exists()
    with pytest.raises(InputError, match="no audio files"):
        make_dataset(tmp_path, tmp_path / "ds2")
    with pytest.raises(InputError, match="not a dataset folder"):
        load_dataset(folder)


def test_cli_dataset_verbs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write(tmp_path / "rec.flac", sine(330.0, 6.0))
    assert main(["dataset", "chop", str(src), "--out", str(tmp_path / "chunks"),
                 "--pitch", "57"]) == 0
    assert main(["dataset", "make", str(tmp_path / "chunks"), str(tmp_path / "ds")]) == 0
    assert "3 notes, 1 pitches (57..57)" in capsys.readouterr().out
    assert main(["dataset", "make", str(tmp_path / "chunks"), str(tmp_path / "ds")]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err


# --- synthetic teacher notes (ganspace.train.synthdata) ---------------------------------------


def test_synth_voices_are_exactly_pitched() -> None:
    """Random voices of both families (and blends) at the ends and middle of the default range:
    YIN finds f0 within 5 cents of the MIDI pitch."""
    rng = np.random.default_rng(11)
    families = set()
    for i in range(12):
        z = rng.standard_normal(synthdata.LATENT_SIZE)
        z[0] = (-2.0, 0.0, 2.0)[i % 3]  # additive, an even blend, FM
        voice = synthdata.voice_from_latent(z)
        families.add(round(voice.fm_mix, 1))
        for pitch in (36, 55, 72):
            note = synthdata.render_note(voice, pitch, seed=i)
            assert note.shape == (AUDIO_LENGTH,) and np.max(np.abs(note)) == pytest.approx(0.5)
            f0, _ = estimate_f0(note)
            assert abs(1200 * np.log2(f0 / synthdata.midi_to_hz(pitch))) < 5.0, (voice, pitch)
    assert {0.0, 0.5, 1.0} <= families


def test_feedback_fm_is_harmonic() -> None:
    """The feedback modulator solves y = sin(phase + beta y) and has only harmonics of its
    frequency (no energy between them)."""
    phase = 2 * np.pi * np.arange(4096) / 64  # 64 periods
    y = synthdata.feedback_sine(phase, 0.8)
    np.testing.assert_allclose(y, np.sin(phase + 0.8 * y), atol=1e-9)
    spectrum = np.abs(np.fft.rfft(y))
    harmonics = spectrum[::64]
    assert spectrum.sum() - harmonics.sum() < 1e-6 * harmonics.sum()
    assert harmonics[2] > 0.05 * harmonics[1]  # feedback adds the 2nd harmonic


def _descriptor_along(name: str, coordinate: int, descriptor, pitch: int = 48) -> list[float]:
    values = []
    for u in (-1.5, -0.5, 0.5, 1.5):
        z = np.zeros(synthdata.LATENT_SIZE)
        z[0] = -3.0 if name == "additive" else 3.0
        z[synthdata.LATENT_NAMES.index("sustain")] = -3.0  # decays all the way down
        z[coordinate] = u
        values.append(descriptor(synthdata.render_note(synthdata.voice_from_latent(z), pitch)))
    return values


@pytest.mark.parametrize(("family", "parameter", "descriptor", "sign"), [
    ("additive", "slope", spectral_centroid, -1),
    ("additive", "bright_decay", spectral_centroid, -1),
    ("fm", "index", spectral_centroid, +1),
    ("additive", "decay", decay_time, +1),
    ("fm", "attack", attack_time, +1),
])
def test_synth_parameters_move_their_descriptors(family: str, parameter: str, descriptor: object,
                                                 sign: int) -> None:
    values = _descriptor_along(family, synthdata.LATENT_NAMES.index(parameter), descriptor)
    assert all(sign * (b - a) > 0 for a, b in zip(values, values[1:], strict=False)), values


def test_render_dataset_is_reproducible(tmp_path: Path) -> None:
    ds = synthdata.render_dataset(tmp_path / "a", [40, 41], notes_per_pitch=2, seed=1)
    assert ds.names == ["voice00000_40", "voice00001_40", "voice00002_41", "voice00003_41"]
    assert ds.latents is not None and ds.latents.shape == (4, synthdata.LATENT_SIZE)
    again = synthdata.render_dataset(tmp_path / "b", [40, 41], notes_per_pitch=2, seed=1,
                                     workers=2)
    np.testing.assert_array_equal(ds.audio, again.audio)
    np.testing.assert_array_equal(ds.latents, load_dataset(tmp_path / "b").latents)
    with pytest.raises(InputError, match="refusing"):
        synthdata.render_dataset(tmp_path / "a", [40], notes_per_pitch=1, seed=1)
    with pytest.raises(InputError, match="latent"):
        synthdata.voice_from_latent(np.zeros(3))
