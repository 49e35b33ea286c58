"""Reproducible synthetic training notes for the default instrument: two exactly pitched voices.

A note is a point of a continuous 12-dimensional timbre space, rendered at one MIDI pitch, 4 s at
16 kHz, NSynth style (held for ``hold`` seconds, then released). Two voice families are blended:

- **additive**: harmonic partials ``n = 1, 2, ...`` with amplitude ``n**-slope`` (times ``even``
  for even n) and a brightness decay ``exp(-t * bright_decay * (n - 1))``;
- **FM** (a 2-operator voice in the spirit of the DX7): a sine carrier at f0, phase-modulated by
  a modulator at ``ratio * f0`` (ratio 1..4, an integer) with self-feedback ``feedback`` and a
  modulation index that decays from ``index`` towards ``index * 0.2`` with time constant
  ``index_decay``. Rendered at 4x the sample rate and decimated with a polyphase FIR, with the
  index capped so that Carson's bandwidth stays below the oversampled Nyquist.

Both share one amplitude envelope (linear attack, exponential decay to a sustain level, linear
release after ``hold``). Every partial of both voices is an integer multiple of f0 (the FM
modulator with feedback is solved exactly through Kepler's equation ``u = phi + beta sin u``,
which is a harmonic waveform), so every note is exactly pitched.

:func:`voice_from_latent` maps a standard-normal vector of :data:`LATENT_SIZE` numbers to a
:class:`Voice` (each coordinate through the normal CDF to its parameter range), so a random
``z ~ N(0, I)`` is always a valid instrument: the reconstruction objective of the trainer uses
this map as its teacher.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly
from scipy.special import ndtr

from ganspace.engine.audio import AUDIO_LENGTH, SAMPLE_RATE
from ganspace.errors import InputError
from ganspace.train.dataset import Dataset, save_dataset

#: Partials above this frequency (Hz) are left out of the additive voice.
MAX_PARTIAL_HZ = 7600.0
#: FM oversampling factor (rendered at 64 kHz, then decimated).
FM_OVERSAMPLE = 4
#: The modulation index decays to this fraction of ``index``.
FM_INDEX_FLOOR = 0.2


def midi_to_hz(pitch: float) -> float:
    """Equal-tempered frequency in Hz of a MIDI pitch (A4 = 69 = 440 Hz)."""
    return 440.0 * 2.0 ** ((pitch - 69.0) / 12.0)


@dataclass(frozen=True)
class Voice:
    """One synthetic instrument (all times in seconds).

    ``fm_mix`` blends the two families: 0 = additive only, 1 = FM only.
    """

    fm_mix: float
    slope: float
    even: float
    bright_decay: float
    ratio: int
    index: float
    index_decay: float
    feedback: float
    attack: float
    decay: float
    sustain: float
    release: float
    hold: float = 3.0


def _uniform(u: float, lo: float, hi: float) -> float:
    return lo + (hi - lo) * u


def _log_uniform(u: float, lo: float, hi: float) -> float:
    return float(math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * u))


#: Coordinates of the latent, in order: the parameter each one sets and how (see
#: :func:`voice_from_latent`).
LATENT_NAMES: tuple[str, ...] = (
    "fm_mix", "slope", "even", "bright_decay", "ratio", "index", "index_decay", "feedback",
    "attack", "decay", "sustain", "release",
)
LATENT_SIZE = len(LATENT_NAMES)


def voice_from_latent(z: np.ndarray) -> Voice:
    """The voice of a latent vector.

    Args:
        z: [LATENT_SIZE] numbers, standard normal for the intended distribution; each is mapped
            through the normal CDF ``u = Phi(z_i)`` (``fm_mix``: ``Phi(2 z_0)``, so most voices
            are mostly one family) to its range: slope 0.5..2.5, even 0..1, bright_decay
            0..1.5 /s, ratio 1..4, index 0..6, index_decay 0.1..3 s (log), feedback 0..0.9,
            attack 3..150 ms (log), decay 0.15..3 s (log), sustain 0..0.8, release 0.05..0.6 s.
    Returns:
        The :class:`Voice`.
    """
    z = np.asarray(z, dtype=np.float64)
    if z.shape != (LATENT_SIZE,) or not np.isfinite(z).all():
        raise InputError(f"a voice latent must be {LATENT_SIZE} finite numbers, got {z.shape}")
    u = ndtr(z)
    return Voice(
        fm_mix=float(ndtr(2.0 * z[0])),
        slope=_uniform(u[1], 0.5, 2.5),
        even=_uniform(u[2], 0.0, 1.0),
        bright_decay=_uniform(u[3], 0.0, 1.5),
        ratio=int(min(4, 1 + math.floor(4.0 * u[4]))),
        index=_uniform(u[5], 0.0, 6.0),
        index_decay=_log_uniform(u[6], 0.1, 3.0),
        feedback=_uniform(u[7], 0.0, 0.9),
        attack=_log_uniform(u[8], 0.003, 0.15),
        decay=_log_uniform(u[9], 0.15, 3.0),
        sustain=_uniform(u[10], 0.0, 0.8),
        release=_log_uniform(u[11], 0.05, 0.6),
    )


def envelope(voice: Voice, t: np.ndarray) -> np.ndarray:
    """Amplitude envelope at times ``t`` [T] (s): linear attack, exponential decay towards
    ``sustain`` with time constant ``decay``, linear release of ``release`` s after ``hold``."""
    attack = np.clip(t / voice.attack, 0.0, 1.0)
    held = voice.sustain + (1.0 - voice.sustain) * np.exp(
        -np.maximum(t - voice.attack, 0.0) / voice.decay)
    release = np.clip(1.0 - (t - voice.hold) / voice.release, 0.0, 1.0)
    return attack * held * release


def additive_tone(voice: Voice, f0: float, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The additive voice without envelope at times ``t`` [T]: partials below
    :data:`MAX_PARTIAL_HZ` with random start phases, peak about 1.

    ``sum_n a_n exp(-bd (n - 1) t) sin(2 pi n f0 t + phi_n)`` is ``exp(bd t) Im(sum_n c_n w^n)``
    with ``w = exp((2 pi i f0 - bd) t)`` and ``c_n = a_n exp(i phi_n)``: one Horner pass of
    complex multiply-adds instead of a sine and an exponential per partial.
    """
    n = np.arange(1, int(MAX_PARTIAL_HZ // f0) + 1)
    amps = n ** -voice.slope * np.where(n % 2 == 0, voice.even, 1.0)
    coeffs = amps * np.exp(1j * rng.uniform(0.0, 2.0 * np.pi, len(n)))
    w = np.exp((2j * np.pi * f0 - voice.bright_decay) * t)
    acc = np.full_like(w, coeffs[-1])
    for c in coeffs[-2::-1]:
        acc *= w
        acc += c
    tone = np.exp(voice.bright_decay * t) * (acc * w).imag
    return tone / max(float(np.abs(tone).max()), 1e-12)


def feedback_sine(phase: np.ndarray, beta: float) -> np.ndarray:
    """A self-modulated sine ``y = sin(phase + beta * y)`` (feedback FM, 0 <= beta < 1).

    Solved exactly: ``u = phase + beta sin u`` is Kepler's equation, solved by Newton's method;
    ``y = sin u`` has the harmonic series ``sum_n 2 J_n(n beta) / (n beta) sin(n phase)``.
    """
    if beta == 0.0:
        return np.sin(phase)
    mean = np.remainder(phase, 2.0 * np.pi)  # the solution is 2 pi-periodic in the phase
    u = mean + beta * np.sin(mean)
    for _ in range(20):  # quadratic convergence: a few steps to 1e-12 for beta <= 0.9
        step = (u - beta * np.sin(u) - mean) / (1.0 - beta * np.cos(u))
        u -= step
        if float(np.abs(step).max()) < 1e-12:
            break
    return np.sin(u)


def fm_tone(voice: Voice, f0: float, rng: np.random.Generator) -> np.ndarray:
    """The FM voice without envelope, [AUDIO_LENGTH] at 16 kHz, peak about 1.

    Rendered at ``FM_OVERSAMPLE`` x 16 kHz, then ``resample_poly`` down. The index is capped at
    ``(nyquist_oversampled / (ratio f0) - 1) / 2`` so that Carson's bandwidth of the sidebands
    stays below the oversampled Nyquist frequency (aliasing would add inharmonic partials).
    """
    rate = SAMPLE_RATE * FM_OVERSAMPLE
    t = np.arange(AUDIO_LENGTH * FM_OVERSAMPLE) / rate
    fm = voice.ratio * f0
    index_cap = max(0.0, (0.5 * rate / fm - 1.0) / 2.0)
    peak_index = min(voice.index, index_cap)
    index = peak_index * (FM_INDEX_FLOOR + (1.0 - FM_INDEX_FLOOR) * np.exp(-t / voice.index_decay))
    # A common start phase keeps the signal odd-symmetric about one instant: no DC term.
    theta = rng.uniform(0.0, 2.0 * np.pi)
    modulator = feedback_sine(2.0 * np.pi * fm * t + voice.ratio * theta, voice.feedback)
    tone = np.sin(2.0 * np.pi * f0 * t + theta + index * modulator)
    out = resample_poly(tone, 1, FM_OVERSAMPLE)
    return out / max(float(np.abs(out).max()), 1e-12)


def render_note(voice: Voice, pitch: int, seed: int = 0, peak: float = 0.5) -> np.ndarray:
    """Render one note.

    Args:
        voice: the instrument.
        pitch: MIDI pitch (f0 = :func:`midi_to_hz`, 20 Hz .. 4 kHz).
        seed: seeds the random start phases.
        peak: absolute peak of the result.
    Returns:
        float32 [64000] at 16 kHz.
    """
    f0 = midi_to_hz(pitch)
    if not 20.0 <= f0 < 4000.0:
        raise InputError(f"pitch {pitch} ({f0:.1f} Hz) is outside the synthesizer's 20 Hz..4 kHz")
    t = np.arange(AUDIO_LENGTH) / SAMPLE_RATE
    rng = np.random.default_rng(seed)
    tone = np.zeros_like(t)
    if voice.fm_mix < 1.0:
        tone += (1.0 - voice.fm_mix) * additive_tone(voice, f0, t, rng)
    if voice.fm_mix > 0.0:
        tone += voice.fm_mix * fm_tone(voice, f0, rng)
    out = tone * envelope(voice, t)
    return (out * (peak / max(float(np.max(np.abs(out))), 1e-12))).astype(np.float32)


def _render_item(item: tuple[np.ndarray, int, int]) -> np.ndarray:
    z, pitch, seed = item
    return render_note(voice_from_latent(z), pitch, seed=seed)


def render_dataset(out_dir: str | Path, pitches: list[int], notes_per_pitch: int, seed: int,
                   workers: int = 1) -> Dataset:
    """Render ``notes_per_pitch`` random voices at every pitch into a dataset folder.

    Latents ``z ~ N(0, I)`` [N, LATENT_SIZE] (N = len(pitches) * notes_per_pitch, pitch-major)
    come from ``numpy.random.default_rng(seed)``; note i is ``voice_from_latent(z[i])`` at its
    pitch with phase seed ``seed * 1_000_003 + i``; items are named ``voice<i:05d>_<pitch>``, and
    the latents are saved with the dataset (``latents.npy``). Same arguments, same bytes.

    Args:
        out_dir: new dataset folder (must not exist, or be empty).
        pitches: MIDI pitches.
        notes_per_pitch: voices per pitch (>= 1).
        seed: makes the set reproducible.
        workers: rendering processes.
    Returns:
        The written :class:`~ganspace.train.dataset.Dataset`.
    """
    if notes_per_pitch < 1 or not pitches:
        raise InputError("render_dataset needs at least one pitch and one note per pitch")
    rng = np.random.default_rng(seed)
    pitch_of = np.repeat(np.asarray(pitches, dtype=np.int64), notes_per_pitch)
    latents = rng.standard_normal((len(pitch_of), LATENT_SIZE)).astype(np.float32)
    items = [(latents[i], int(p), seed * 1_000_003 + i) for i, p in enumerate(pitch_of)]
    if workers > 1:
        with get_context("fork").Pool(workers) as pool:
            notes = pool.map(_render_item, items, chunksize=8)
    else:
        notes = [_render_item(item) for item in items]
    names = [f"voice{i:05d}" for i in range(len(items))]
    return save_dataset(out_dir, np.stack(notes), [int(p) for p in pitch_of], names,
                        [f"synthdata seed {seed}" for _ in items], latents)
