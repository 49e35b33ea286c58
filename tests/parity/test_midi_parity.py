"""MIDI rendering: Magenta parity on the fixture, and the cases Magenta breaks on."""

from __future__ import annotations

import mido
import numpy as np
import pytest
import soundfile as sf

from ganspace.cli import main
from ganspace.engine.midi import load_midi, render_midi
from ganspace.errors import InputError
from ganspace.formats import load_model


@pytest.fixture(scope="module")
def small(magenta_small):
    return load_model(magenta_small, device="cpu")


@pytest.fixture(scope="module")
def midi_ref(magenta_small):
    return dict(np.load(magenta_small / "midi_path_io.npz"))


def write_midi(path, notes, tempo=500000):
    """notes: (pitch, velocity, start_beats, length_beats) at 480 ticks/beat."""
    mid = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=tempo, time=0))
    events = []
    for pitch, vel, start, length in notes:
        events.append((int(start * 480), "note_on", pitch, vel))
        events.append((int((start + length) * 480), "note_off", pitch, 0))
    now = 0
    for tick, kind, pitch, vel in sorted(events, key=lambda e: (e[0], e[1] == "note_on")):
        track.append(mido.Message(kind, note=pitch, velocity=vel, time=tick - now))
        now = tick
    mid.save(path)


def test_load_midi_reads_all_notes(magenta_small, midi_ref):
    notes = load_midi(magenta_small / "midi_path_input.mid")
    keep = (notes.pitches >= 36) & (notes.pitches <= 84)
    np.testing.assert_array_equal(notes.pitches[keep], midi_ref["pitches"])
    np.testing.assert_allclose(notes.start_times[keep], midi_ref["start_times"], atol=1e-9)
    np.testing.assert_allclose(notes.end_times[keep], midi_ref["end_times"], atol=1e-9)
    np.testing.assert_array_equal(notes.velocities[keep], midi_ref["velocities"])


def test_render_matches_magenta(small, magenta_small, midi_ref):
    result = render_midi(small, load_midi(magenta_small / "midi_path_input.mid"),
                         secs_per_instrument=0.5, z_instruments=midi_ref["z_instruments"],
                         t_instruments=midi_ref["t_instruments"])
    assert result.dropped == 2  # pitches 30 and 90 are outside Magenta's 36..84
    np.testing.assert_allclose(result.z_notes, midi_ref["z_notes"], atol=1e-12)
    ref_notes = midi_ref["audio_notes"]
    assert np.abs(result.audio_notes - ref_notes).max() / np.abs(ref_notes).max() <= 1e-3
    assert result.clip.shape == midi_ref["clip"].shape
    assert np.abs(result.clip - midi_ref["clip"]).max() / np.abs(midi_ref["clip"]).max() <= 1e-3


def test_random_instruments_are_placed_like_magenta(small, magenta_small):
    notes = load_midi(magenta_small / "midi_path_input.mid")
    result = render_midi(small, notes, secs_per_instrument=0.5, seed=3)
    np.testing.assert_allclose(result.t_instruments, np.linspace(-0.0001, 1.9, 3))
    assert result.z_instruments.shape == (3, 32)


def test_short_file_renders_without_nan(small, tmp_path):
    path = tmp_path / "short.mid"
    write_midi(path, [(60, 90, 0, 0.5), (64, 60, 0.5, 0.5)])
    result = render_midi(small, load_midi(path), secs_per_instrument=6.0, seed=1)
    assert len(result.z_instruments) == 1
    assert np.isfinite(result.clip).all()
    assert np.isclose(result.clip.max(), 0.5)  # Magenta normalises by the signed max


def test_no_playable_notes(small, tmp_path):
    path = tmp_path / "low.mid"
    write_midi(path, [(20, 90, 0, 1)])
    with pytest.raises(InputError, match="no notes to render"):
        render_midi(small, load_midi(path))


def test_cli_render_midi(magenta_small, tmp_path):
    out = tmp_path / "clip.wav"
    assert main(["render-midi", str(magenta_small), str(magenta_small / "midi_path_input.mid"),
                 "--secs-per-instrument", "0.5", "--seed", "0", "--out", str(out)]) == 0
    clip, sr = sf.read(out)
    assert sr == 16000 and len(clip) == 64000 and np.isclose(clip.max(), 0.5, atol=1e-6)


def test_cli_unreadable_midi(magenta_small, tmp_path, capsys):
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"not midi")
    out = str(tmp_path / "x.wav")
    assert main(["render-midi", str(magenta_small), str(bad), "--out", out]) == 2
    assert "not a readable MIDI file" in capsys.readouterr().err
