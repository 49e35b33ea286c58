"""MIDI note mixing where Magenta breaks (the rendering parity tests are in
tests/parity/test_midi_parity.py)."""

from __future__ import annotations

import numpy as np

from ganspace.engine.midi import MidiNotes, combine_notes


def test_silent_notes_stay_silent():
    notes = load_midi_like([60, 62], [0.0, 0.5], [0.4, 0.9])
    clip = combine_notes(np.zeros((2, 64000)), notes, 16000)
    assert np.isfinite(clip).all() and not clip.any()
    negative = -np.abs(np.random.default_rng(0).standard_normal((2, 64000)))
    clip = combine_notes(negative, notes, 16000)
    assert np.isfinite(clip).all() and clip.min() < 0  # not flipped to positive by a signed max


def load_midi_like(pitches, starts, ends):
    return MidiNotes(np.array(pitches), np.array([100] * len(pitches)), np.array(starts),
                     np.array(ends))
