"""Hallucinations: sequences of generated notes laid out in time and mixed into one clip.

Two ways to build the sequence of sounds:

- z space (:func:`hallucinate_z`): keypoint latents, ``M`` slerp steps strictly between each
  consecutive pair (the original repeated every interior keypoint; here each appears once), so
  N keypoints give ``N + (N-1) M`` sounds. Optional shared GANSpace coefficients (z mode edit).
- coefficient space (:func:`hallucinate_coefficients`, the HALLU sequencer): keypoints are
  coefficient vectors, linearly interpolated with ``k`` subdivisions (``k - 1`` new points per
  pair), ``N + (N-1) max(0, k-1)`` sounds, generated in noz mode (layer := mean + offset).

Assembly (:func:`assemble`), all times in seconds: every sound gets the envelope of
:class:`Envelope` (silence for ``trim``, a linear attack from 0, sustain at 1, a linear release down
to 0, then nothing), is normalised by its absolute peak (a silent sound stays silent), starts
``spacing`` seconds after the previous one and is overlap-added; the mix is normalised to an
absolute peak of 0.5. Sample counts are ``round(seconds * sample_rate)`` with Python's ``round``
(half to even): the clip has exactly ``round(((S-1) * spacing + trim + attack + sustain + release)
* sample_rate)`` samples, sound i starts at sample ``round(i * spacing * sample_rate)``, and the
envelope segment boundaries are the rounded cumulative times.

Requests are bounded (:data:`MAX_SOUNDS` sounds, :data:`MAX_CLIP_SECONDS` of output) and fully
validated before any generation, so a server can pass user input straight in.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from ganspace.engine.latent import check_latents, slerp
from ganspace.engine.model import GANSynthModel
from ganspace.errors import Cancelled, InputError
from ganspace.space.directions import Directions

MAX_SOUNDS = 4096
"""Most sounds in one hallucination."""
MAX_CLIP_SECONDS = 3600.0
"""Longest clip (one hour: 57.6 M float32 samples at 16 kHz)."""

Progress = Callable[[int, int], None]
"""``progress(done, total)``: sounds generated so far, of the total."""


def _seconds(name: str, value: float) -> float:
    """``value`` as a finite float >= 0, else InputError."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if isinstance(value, bool) or not math.isfinite(v) or v < 0:
        raise InputError(f"{name} must be a number >= 0 seconds, got {value!r}")
    return v


@dataclass(frozen=True)
class Envelope:
    """Per-sound amplitude envelope, in seconds: silence, linear attack, sustain, linear
    release."""

    trim: float
    attack: float
    sustain: float
    release: float

    @property
    def total(self) -> float:
        """trim + attack + sustain + release (seconds)."""
        return self.trim + self.attack + self.sustain + self.release

    def check(self, note_seconds: float) -> None:
        """InputError unless every part is finite and >= 0 and the total fits in a note of
        ``note_seconds`` (4 s for GANSynth)."""
        for name in ("trim", "attack", "sustain", "release"):
            _seconds(f"envelope {name}", getattr(self, name))
        if self.total > note_seconds + 1e-9:
            raise InputError(
                f"envelope trim + attack + sustain + release = {self.total:g} s is longer than a "
                f"note ({note_seconds:g} s); shorten it"
            )

    def gains(self, sample_rate: int) -> np.ndarray:
        """Gain per sample: float32 [round(total * sample_rate)]; attack ``j / n`` (starts at 0),
        release ``1 - (j + 1) / n`` (ends at 0)."""
        b = [round(t * sample_rate) for t in np.cumsum(
            [self.trim, self.attack, self.sustain, self.release]).tolist()]
        out = np.zeros(b[3], dtype=np.float32)
        n_att, n_rel = b[1] - b[0], b[3] - b[2]
        out[b[0] : b[1]] = np.arange(n_att, dtype=np.float32) / max(n_att, 1)
        out[b[1] : b[2]] = 1.0
        out[b[2] : b[3]] = 1.0 - np.arange(1, n_rel + 1, dtype=np.float32) / max(n_rel, 1)
        return out


@dataclass
class Hallucination:
    """A finished hallucination.

    Attributes:
        clip: float32 [T] mono audio, absolute peak 0.5 (all zeros when every sound is silent).
        onsets: float64 [S] start time of each sound in seconds (``i * spacing``).
        count: S, the number of sounds.
        sample_rate: Hz.
    """

    clip: np.ndarray
    onsets: np.ndarray
    count: int
    sample_rate: int

    @property
    def seconds(self) -> float:
        """Clip duration in seconds."""
        return len(self.clip) / self.sample_rate


# ---- paths -------------------------------------------------------------------------------------
def _check_int(name: str, value: int, low: int) -> int:
    try:
        ok = not isinstance(value, bool) and int(value) == value and value >= low
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise InputError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def z_count(keypoints: int, steps: int) -> int:
    """Sounds in a z path: ``N + (N-1) M``."""
    n = _check_int("keypoints", keypoints, 1)
    return n + (n - 1) * _check_int("steps", steps, 0)


def coefficient_count(keypoints: int, subdivisions: int) -> int:
    """Sounds in a coefficient path: ``N + (N-1) max(0, k-1)``."""
    n = _check_int("steps", keypoints, 1)
    return n + (n - 1) * max(0, _check_int("subdivisions", subdivisions, 0) - 1)


def z_path(keypoints: ArrayLike, steps: int) -> np.ndarray:
    """Slerp path through keypoint latents.

    Args:
        keypoints: [N, Z] latents, N >= 1.
        steps: M >= 0 points strictly between consecutive keypoints (at t = j / (M+1)).
    Returns:
        float32 [N + (N-1) M, Z]: keypoint 0, its M successors, keypoint 1, ... (no repeats).
    """
    kp = np.asarray(keypoints, dtype=np.float32)
    if kp.ndim != 2 or len(kp) < 1:
        raise InputError(f"keypoints must be [N, Z] with N >= 1, got shape {list(kp.shape)}")
    count = z_count(len(kp), steps)
    _check_sounds(count)
    t = np.arange(1, steps + 1, dtype=np.float64) / (steps + 1)
    rows = [kp[:1]]
    for a, b in zip(kp[:-1], kp[1:], strict=True):
        if steps:
            rows.append(slerp(a, b, t).astype(np.float32))
        rows.append(b[None])
    return np.concatenate(rows)


def coefficient_path(steps: ArrayLike, subdivisions: int) -> np.ndarray:
    """Linear path through coefficient keypoints.

    Args:
        steps: [N, k] coefficient vectors (standard deviations), N >= 1.
        subdivisions: k >= 0; each pair gets ``k - 1`` points at t = j / k (0 and 1 add none).
    Returns:
        float32 [N + (N-1) max(0, k-1), k].
    """
    st = np.asarray(steps, dtype=np.float32)
    if st.ndim != 2 or len(st) < 1:
        raise InputError(f"coefficient steps must be [N, k] with N >= 1, got shape "
                         f"{list(st.shape)}")
    if not np.isfinite(st).all():
        raise InputError("coefficient steps contain NaN or inf")
    count = coefficient_count(len(st), subdivisions)
    _check_sounds(count)
    t = (np.arange(1, max(subdivisions, 1), dtype=np.float32) / max(subdivisions, 1))[:, None]
    rows = [st[:1]]
    for a, b in zip(st[:-1], st[1:], strict=True):
        rows.append((1 - t) * a + t * b)
        rows.append(b[None])
    return np.concatenate(rows).astype(np.float32)


# ---- assembly ----------------------------------------------------------------------------------
def _check_sounds(count: int) -> None:
    if count > MAX_SOUNDS:
        raise InputError(f"{count} sounds requested; at most {MAX_SOUNDS} per hallucination")


def clip_samples(count: int, sample_rate: int, spacing: float, envelope: Envelope) -> int:
    """Exact clip length: ``round(((count-1) * spacing + envelope.total) * sample_rate)``."""
    return round(((count - 1) * spacing + envelope.total) * sample_rate)


def check_request(count: int, sample_rate: int, spacing: float, envelope: Envelope,
                  note_seconds: float) -> None:
    """All the checks of a hallucination request, before any work: envelope, spacing, number of
    sounds, clip duration (InputError naming the problem)."""
    envelope.check(note_seconds)
    _seconds("spacing", spacing)
    _check_int("sounds", count, 1)
    _check_sounds(count)
    seconds = (count - 1) * spacing + envelope.total
    if seconds > MAX_CLIP_SECONDS:
        raise InputError(f"the clip would last {seconds:g} s; at most {MAX_CLIP_SECONDS:g} s "
                         "(use fewer sounds or a smaller spacing)")


class Mixer:
    """Incremental overlap-add of enveloped, peak-normalised sounds into a clip (so a long
    hallucination never holds all its notes in memory)."""

    def __init__(self, count: int, sample_rate: int, spacing: float, envelope: Envelope) -> None:
        self.count = count
        self.sample_rate = sample_rate
        self.gain = envelope.gains(sample_rate)
        self.clip = np.zeros(clip_samples(count, sample_rate, spacing, envelope), np.float32)
        self.onsets = np.arange(count, dtype=np.float64) * spacing
        self.starts = [round(t * sample_rate) for t in self.onsets.tolist()]

    def add(self, first: int, notes: np.ndarray) -> None:
        """Mix sounds ``first .. first + len(notes) - 1`` given as raw notes [b, L] (L at least
        the envelope length; non-finite samples count as silence)."""
        e = len(self.gain)
        if notes.ndim != 2 or notes.shape[1] < e:
            raise InputError(f"notes must be [S, L] with L >= {e} samples, got shape "
                             f"{list(notes.shape)}")
        seg = notes[:, :e].astype(np.float32) * self.gain
        seg = np.nan_to_num(seg, nan=0.0, posinf=0.0, neginf=0.0)
        peak = np.abs(seg).max(axis=1, initial=0.0)
        seg = np.divide(seg, peak[:, None], out=np.zeros_like(seg), where=peak[:, None] > 0)
        for i, sound in enumerate(seg):
            o = self.starts[first + i]
            n = min(e, len(self.clip) - o)
            self.clip[o : o + n] += sound[:n]

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        """(clip [T] float32 normalised to absolute peak 0.5 (zeros stay zeros), onsets [S] s)."""
        peak = float(np.abs(self.clip).max(initial=0.0))
        if peak > 0:
            self.clip *= np.float32(0.5 / peak)
        return self.clip, self.onsets


def assemble(notes: ArrayLike, sample_rate: int, spacing: float,
             envelope: Envelope) -> tuple[np.ndarray, np.ndarray]:
    """Lay out notes in time and mix them (see the module docstring).

    Args:
        notes: [S, L] mono notes at ``sample_rate`` (S >= 1).
        sample_rate: Hz.
        spacing: seconds between consecutive onsets (0 stacks every sound).
        envelope: per-sound envelope; must fit in L samples.
    Returns:
        (clip float32 [round(((S-1) spacing + envelope.total) sample_rate)], onsets float64 [S]).
    """
    arr = np.asarray(notes, dtype=np.float32)
    if arr.ndim != 2:
        raise InputError(f"notes must be [S, L], got shape {list(arr.shape)}")
    check_request(len(arr), sample_rate, spacing, envelope, arr.shape[1] / sample_rate)
    mixer = Mixer(len(arr), sample_rate, spacing, envelope)
    mixer.add(0, arr)
    return mixer.finish()


# ---- generation --------------------------------------------------------------------------------
def _check_coefficients(directions: Directions, coefficients: ArrayLike) -> np.ndarray:
    c = np.asarray(coefficients, dtype=np.float32)
    if c.ndim != 1:
        raise InputError(f"coefficients must be one vector [k], got shape {list(c.shape)}")
    if len(c) > directions.count:
        raise InputError(f"{len(c)} coefficients given but the directions hold only "
                         f"{directions.count}")
    if not np.isfinite(c).all():
        raise InputError("coefficients contain NaN or inf")
    return c


def _render(model: GANSynthModel, count: int, spacing: float, envelope: Envelope,
            generate: Callable[[int, int], np.ndarray], progress: Progress | None,
            cancel: threading.Event | None) -> Hallucination:
    mixer = Mixer(count, model.sample_rate, spacing, envelope)
    step = max(1, model.batch_size)
    for s in range(0, count, step):
        if cancel is not None and cancel.is_set():
            raise Cancelled(f"hallucination cancelled after {s} of {count} sounds")
        e = min(count, s + step)
        mixer.add(s, generate(s, e))
        if progress is not None:
            progress(e, count)
    clip, onsets = mixer.finish()
    return Hallucination(clip, onsets, count, model.sample_rate)


def hallucinate_z(
    model: GANSynthModel,
    keypoints: ArrayLike,
    steps: int,
    pitch: int,
    envelope: Envelope,
    spacing: float,
    directions: Directions | None = None,
    coefficients: ArrayLike | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> Hallucination:
    """Hallucinate along a slerp path through keypoint latents.

    Args:
        model: the generator.
        keypoints: [N, latent_size] latents (N >= 1), e.g. ``model.random_z(N, seed)``.
        steps: M >= 0 slerp points between consecutive keypoints.
        pitch: MIDI pitch of every sound.
        envelope, spacing: see :func:`assemble`.
        directions, coefficients: optional z-mode edit applied to every sound (coefficients [k],
            standard deviations, k <= K); coefficients need directions.
        progress: called as ``progress(done, total)`` after each generation batch.
        cancel: when set, the next batch raises :class:`~ganspace.errors.Cancelled`.
    Returns:
        :class:`Hallucination` with ``N + (N-1) M`` sounds.
    """
    kp = check_latents(keypoints, model.latent_size)
    count = z_count(len(kp), steps)
    check_request(count, model.sample_rate, spacing, envelope,
                  model.audio_length / model.sample_rate)
    model.label_for(pitch)
    c = None
    if coefficients is not None:
        if directions is None:
            raise InputError("coefficients need directions")
        c = _check_coefficients(directions, coefficients)
    if directions is not None:
        directions.check_compatible(model)
        if c is None:
            c = np.zeros(0, dtype=np.float32)
    path = z_path(kp, steps)
    return _render(model, count, spacing, envelope,
                   lambda s, e: model.generate(path[s:e], pitch, directions, c), progress, cancel)


def hallucinate_coefficients(
    model: GANSynthModel,
    directions: Directions,
    steps: ArrayLike,
    subdivisions: int,
    pitch: int,
    envelope: Envelope,
    spacing: float,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> Hallucination:
    """Hallucinate along a linear path through coefficient keypoints, in noz mode (each sound's
    layer is ``mean + sum_i c_i stdev_i comp_i``; z is not used).

    Args:
        model: the generator.
        directions: GANSpace directions made for ``model``.
        steps: [N, k] coefficient keypoints (standard deviations, k <= K), N >= 1.
        subdivisions: k >= 0 (see :func:`coefficient_path`).
        pitch: MIDI pitch (must be one the model knows).
        envelope, spacing, progress, cancel: as :func:`hallucinate_z`.
    Returns:
        :class:`Hallucination` with ``N + (N-1) max(0, k-1)`` sounds.
    """
    st = np.asarray(steps, dtype=np.float32)
    if st.ndim != 2 or len(st) < 1:
        raise InputError(f"coefficient steps must be [N, k] with N >= 1, got shape "
                         f"{list(st.shape)}")
    count = coefficient_count(len(st), subdivisions)
    check_request(count, model.sample_rate, spacing, envelope,
                  model.audio_length / model.sample_rate)
    model.label_for(pitch)
    directions.check_compatible(model)
    for row in st:
        _check_coefficients(directions, row)
    path = coefficient_path(st, subdivisions)
    return _render(model, count, spacing, envelope,
                   lambda s, e: model.generate(None, pitch, directions, path[s:e]), progress,
                   cancel)
