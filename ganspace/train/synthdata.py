"""Reproducible synthetic training notes for the default instrument: harmonic additive tones.

Each *instrument* is a :class:`Timbre` (spectral slope, odd/even balance, brightness decay,
envelope) drawn from a seeded generator; each note is that timbre at one MIDI pitch, 4 s at
16 kHz, NSynth style (held for ``hold`` seconds, then released). Partials are exact integer
multiples of f0 (no inharmonicity, no vibrato), so every note is strongly and unambiguously
pitched: the easiest family for a small GAN to learn and a clean reference for pitch evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from ganspace.engine.audio import AUDIO_LENGTH, SAMPLE_RATE
from ganspace.errors import InputError


def midi_to_hz(pitch: float) -> float:
    """Equal-tempered frequency in Hz of a MIDI pitch (A4 = 69 = 440 Hz)."""
    return 440.0 * 2.0 ** ((pitch - 69.0) / 12.0)


@dataclass(frozen=True)
class Timbre:
    """One synthetic instrument.

    Partial n (1-based) has amplitude ``n**-slope * (odd if n odd else even) *
    exp(-t * bright_decay * (n - 1))`` on top of the note envelope: linear ``attack`` (s), then an
    exponential decay with time constant ``decay`` (s) towards ``sustain`` (0..1), and after
    ``hold`` seconds a linear release of ``release`` seconds.
    """

    slope: float
    odd: float
    even: float
    bright_decay: float
    attack: float
    decay: float
    sustain: float
    release: float
    hold: float = 3.0


def random_timbres(count: int, seed: int) -> list[Timbre]:
    """``count`` timbres drawn reproducibly from ``seed`` (from mellow and organ-like to bright,
    plucked and clarinet-like odd-harmonic tones)."""
    rng = np.random.default_rng(seed)
    timbres = []
    for _ in range(count):
        odd_only = rng.random() < 0.25
        timbres.append(
            Timbre(
                slope=float(rng.uniform(0.6, 2.2)),
                odd=1.0,
                even=float(rng.uniform(0.0, 0.15) if odd_only else rng.uniform(0.4, 1.0)),
                bright_decay=float(rng.choice([0.0, rng.uniform(0.05, 1.5)])),
                attack=float(np.exp(rng.uniform(np.log(0.003), np.log(0.12)))),
                decay=float(np.exp(rng.uniform(np.log(0.2), np.log(3.0)))),
                sustain=float(rng.uniform(0.0, 0.8)),
                release=float(rng.uniform(0.05, 0.6)),
            )
        )
    return timbres


def render_note(timbre: Timbre, pitch: int, seed: int = 0, peak: float = 0.5) -> np.ndarray:
    """Render one note.

    Args:
        timbre: the instrument.
        pitch: MIDI pitch (f0 = :func:`midi_to_hz`); partials above 7.6 kHz are left out.
        seed: seeds the partials' random start phases.
        peak: absolute peak of the result.
    Returns:
        float32 [64000] at 16 kHz.
    """
    f0 = midi_to_hz(pitch)
    if not 20.0 <= f0 < 4000.0:
        raise InputError(f"pitch {pitch} ({f0:.1f} Hz) is outside the synthesizer's 20 Hz..4 kHz")
    t = np.arange(AUDIO_LENGTH) / SAMPLE_RATE
    rng = np.random.default_rng(seed)
    n = np.arange(1, int(7600.0 // f0) + 1)
    amps = n ** -timbre.slope * np.where(n % 2 == 1, timbre.odd, timbre.even)
    phases = rng.uniform(0.0, 2.0 * np.pi, len(n))
    # Partials with brightness decay: sum_n a_n exp(-t bd (n-1)) sin(2 pi n f0 t + phi_n).
    tone = np.zeros_like(t)
    for k, a, ph in zip(n, amps, phases, strict=True):
        if a > 0.0:
            tone += a * np.exp(-t * timbre.bright_decay * (k - 1)) * np.sin(
                2.0 * np.pi * k * f0 * t + ph)
    attack = np.clip(t / timbre.attack, 0.0, 1.0)
    held = timbre.sustain + (1.0 - timbre.sustain) * np.exp(-np.maximum(t - timbre.attack, 0.0)
                                                            / timbre.decay)
    release = np.clip(1.0 - (t - timbre.hold) / timbre.release, 0.0, 1.0)
    out = tone * attack * held * release
    return (out * (peak / np.max(np.abs(out)))).astype(np.float32)


def render_wavs(out_dir: str | Path, pitches: list[int], instruments: int, seed: int) -> list[Path]:
    """Write ``additive<NN>_<pitch>.wav`` (16 kHz mono float32) for every instrument and pitch.

    Args:
        out_dir: created; must not already hold any of the files.
        pitches: MIDI pitches.
        instruments: number of random timbres (:func:`random_timbres` with ``seed``).
        seed: makes the whole set reproducible (timbres and phases).
    Returns:
        The written paths, instrument-major.
    """
    out = Path(out_dir)
    timbres = random_timbres(instruments, seed)
    names = [(i, p, out / f"additive{i:02d}_{p}.wav") for i in range(instruments) for p in pitches]
    existing = [str(path) for _, _, path in names if path.exists()]
    if existing:
        raise InputError(f"refusing to overwrite {len(existing)} files, e.g. {existing[0]}")
    out.mkdir(parents=True, exist_ok=True)
    for i, p, path in names:
        note = render_note(timbres[i], p, seed=seed * 100003 + i * 1009 + p)
        sf.write(str(path), note, SAMPLE_RATE, subtype="FLOAT")
    return [path for _, _, path in names]
