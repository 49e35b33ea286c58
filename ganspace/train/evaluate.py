"""Objective checks of a model: pitch accuracy of random notes, silence/NaN, and what GANSpace
directions change.

- :func:`estimate_f0`: YIN (de Cheveigné & Kawahara 2002: cumulative-mean-normalised difference,
  absolute threshold, parabolic interpolation of the difference function, refined on the
  furthest multiple of the period) on a 4096-sample window at the loudest part of the note (the
  sustained part for held notes, just after the attack for plucked ones), upsampled 4x so that
  lags have sub-sample resolution (bright high notes otherwise drop an octave).
- :func:`spectral_centroid`, :func:`decay_time`, :func:`attack_time`, :func:`level_db`: simple
  timbre and envelope descriptors.
- :func:`evaluate`: ``count`` random notes (z ~ N(0, 1), pitches drawn uniformly from the
  model's pitch set); a note counts as *in tune* when it is finite, not silent, voiced, and its
  f0 is within +-50 cents of its MIDI pitch. With directions, every one of the first components
  is applied with coefficients -2 and +2 to the same notes, and the mean change of the
  descriptors is reported.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from scipy.signal import resample_poly
from scipy.stats import rankdata

from ganspace.engine.audio import SAMPLE_RATE
from ganspace.engine.model import GANSynthModel
from ganspace.errors import InputError
from ganspace.formats import load_model
from ganspace.space.directions import Directions, load_directions
from ganspace.train.synthdata import midi_to_hz

#: A note whose absolute peak is below this is silent.
SILENCE_PEAK = 1e-3
#: YIN's absolute threshold on the normalised difference function.
YIN_THRESHOLD = 0.15
#: YIN runs on the analysis window upsampled by this factor (sub-sample lags).
YIN_UPSAMPLE = 4
#: Windows whose best normalised difference stays above this are unvoiced (no f0).
VOICED_MAX = 0.5
IN_TUNE_CENTS = 50.0


def cents(f0: float, pitch: float) -> float:
    """Deviation in cents of ``f0`` (Hz) from MIDI ``pitch``: ``1200 * log2(f0 / f(pitch))``."""
    return float(1200.0 * np.log2(f0 / midi_to_hz(pitch)))


def _frame_rms(x: np.ndarray, frame: int, hop: int) -> np.ndarray:
    """RMS of ``x`` [T] in frames of ``frame`` samples every ``hop`` -> [F]."""
    if len(x) < frame:
        x = np.pad(x, (0, frame - len(x)))
    frames = np.lib.stride_tricks.sliding_window_view(x, frame)[::hop]
    return np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=1))


def analysis_window(x: np.ndarray, length: int = 4096) -> np.ndarray:
    """The ``length``-sample window of ``x`` [T] that starts at its loudest 1024-sample frame
    (moved back so that it fits), float64."""
    hop = 256
    rms = _frame_rms(x, 1024, hop)
    start = min(int(np.argmax(rms)) * hop, max(0, len(x) - length))
    return np.asarray(x[start : start + length], dtype=np.float64)


def estimate_f0(x: np.ndarray, sample_rate: int = SAMPLE_RATE, fmin: float = 30.0,
                fmax: float = 2000.0) -> tuple[float, float]:
    """YIN fundamental frequency of a note.

    Args:
        x: [T] audio (at least ``4096 + sample_rate / fmin`` samples are used when present).
        sample_rate: Hz.
        fmin, fmax: search range in Hz.
    Returns:
        ``(f0 Hz, aperiodicity)``; f0 is NaN when the window is unvoiced (aperiodicity, the
        normalised difference at the chosen lag, above :data:`VOICED_MAX`) or silent.
    """
    need = 4096 + int(np.ceil(sample_rate / fmin)) + 2
    seg = analysis_window(np.asarray(x), need)
    if len(seg) < need or not np.any(seg):
        return float("nan"), 1.0
    # On the integer lags of the original rate, bright high notes (energy near 7 kHz, a period
    # of 30.6 samples at MIDI 72) never line up with the true period, and YIN jumps an octave
    # down to the nearest lag that does; a 4x upsampled copy puts every lag within 1/8 sample.
    seg = resample_poly(seg, YIN_UPSAMPLE, 1)
    sample_rate *= YIN_UPSAMPLE
    tau_min = max(2, int(sample_rate / fmax))
    tau_max = int(np.ceil(sample_rate / fmin))
    win = 4096 * YIN_UPSAMPLE
    # d(tau) = sum_{j<W} (x_j - x_{j+tau})^2 = E0 + E(tau) - 2 r(tau), via FFT correlation.
    n = 1 << int(np.ceil(np.log2(len(seg) + win)))
    spec_a = np.fft.rfft(seg[:win], n)
    spec_b = np.fft.rfft(seg, n)
    r = np.fft.irfft(np.conj(spec_a) * spec_b, n)[: tau_max + 2]
    sq = np.concatenate([[0.0], np.cumsum(seg**2)])
    energy = sq[win : win + tau_max + 2] - sq[: tau_max + 2]
    d = np.maximum(sq[win] + energy - 2.0 * r, 0.0)
    cmnd = np.ones_like(d)
    running = np.cumsum(d[1:])
    cmnd[1:] = d[1:] * np.arange(1, len(d)) / np.maximum(running, 1e-300)
    search = cmnd[tau_min : tau_max + 1]
    below = np.flatnonzero(search < YIN_THRESHOLD)
    if len(below):
        tau = tau_min + int(below[0])
        while tau + 1 <= tau_max and cmnd[tau + 1] < cmnd[tau]:
            tau += 1
    else:
        tau = tau_min + int(np.argmin(search))
    aperiodicity = float(cmnd[tau])
    if aperiodicity > VOICED_MAX:
        return float("nan"), aperiodicity
    period = tau + _vertex(d, tau)
    # Refine on the furthest multiple of the period in range: the error shrinks by that factor.
    m = int(tau_max // period)
    if m > 1:
        centre = int(round(m * period))
        lo, hi = max(1, centre - 2), min(len(d) - 2, centre + 2)
        j = lo + int(np.argmin(d[lo : hi + 1]))
        period = (j + _vertex(d, j)) / m
    return float(sample_rate / period), aperiodicity


def _vertex(y: np.ndarray, i: int) -> float:
    """Offset in [-1, 1] of the vertex of the parabola through ``y[i-1], y[i], y[i+1]``."""
    a, b, c = y[i - 1], y[i], y[i + 1]
    denom = a - 2.0 * b + c
    return float(np.clip(0.5 * (a - c) / denom, -1.0, 1.0)) if denom > 0 else 0.0


def spectral_centroid(x: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    """Energy-weighted mean over frames of the spectral centroid (Hz) of ``x`` [T]
    (Hann frames of 2048, hop 512)."""
    frames = np.lib.stride_tricks.sliding_window_view(np.asarray(x, np.float64), 2048)[::512]
    mag = np.abs(np.fft.rfft(frames * np.hanning(2048), axis=1))
    freqs = np.fft.rfftfreq(2048, 1.0 / sample_rate)
    total = mag.sum(axis=1)
    if not total.sum() > 0:
        return float("nan")
    per_frame = (mag * freqs).sum(axis=1) / np.maximum(total, 1e-12)
    weight = (mag**2).sum(axis=1)
    return float((per_frame * weight).sum() / weight.sum())


def decay_time(x: np.ndarray, sample_rate: int = SAMPLE_RATE, drop_db: float = 20.0) -> float:
    """Seconds from the loudest 1024-sample frame of ``x`` [T] until the frame RMS first falls
    ``drop_db`` dB below it (until the end of the note if it never does)."""
    hop = 256
    rms = _frame_rms(x, 1024, hop)
    peak = int(np.argmax(rms))
    if not rms[peak] > 0:
        return float("nan")
    below = np.flatnonzero(rms[peak:] < rms[peak] * 10.0 ** (-drop_db / 20.0))
    frames = int(below[0]) if len(below) else len(rms) - peak
    return frames * hop / sample_rate


def attack_time(x: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    """Seconds from the first 256-sample frame of ``x`` [T] whose RMS reaches 10 % of the
    loudest frame's to the first that reaches 90 % of it (hop 64 samples, 4 ms)."""
    hop = 64
    rms = _frame_rms(x, 256, hop)
    top = float(rms.max())
    if not top > 0:
        return float("nan")
    start = int(np.argmax(rms >= 0.1 * top))
    end = int(np.argmax(rms >= 0.9 * top))
    return max(0, end - start) * hop / sample_rate


def level_db(x: np.ndarray) -> float:
    """RMS level (dBFS) of the loudest 1024-sample frame of ``x`` [T] (-inf when silent)."""
    top = float(_frame_rms(x, 1024, 256).max())
    return 20.0 * float(np.log10(top)) if top > 0 else float("-inf")


def _generate(model: GANSynthModel, z: np.ndarray, pitches: np.ndarray, **kw: Any) -> np.ndarray:
    return model.generate(z, [int(p) for p in pitches], **kw)


def pitch_report(notes: np.ndarray, pitches: np.ndarray, sample_rate: int) -> dict[str, Any]:
    """Pitch accuracy of generated ``notes`` [N, T] asked for MIDI ``pitches`` [N].

    Returns a JSON-ready dict: counts of non-finite, silent and unvoiced notes, the fraction
    within +-50 cents (over all N notes), the median absolute error (cents, voiced notes),
    octave errors, and per-pitch fractions.
    """
    n = len(notes)
    finite = np.isfinite(notes).all(axis=1)
    peaks = np.where(finite, np.abs(np.nan_to_num(notes)).max(axis=1), 0.0)
    silent = finite & (peaks < SILENCE_PEAK)
    errors = np.full(n, np.nan)
    for i in np.flatnonzero(finite & ~silent):
        f0, _ = estimate_f0(notes[i], sample_rate)
        if np.isfinite(f0):
            errors[i] = cents(f0, pitches[i])
    voiced = np.isfinite(errors)
    in_tune = voiced & (np.abs(errors) <= IN_TUNE_CENTS)
    octave = voiced & ~in_tune & (np.abs(errors - 1200.0 * np.round(errors / 1200.0))
                                  <= IN_TUNE_CENTS)
    per_pitch = {str(int(p)): round(float(in_tune[pitches == p].mean()), 3)
                 for p in np.unique(pitches)}
    return {
        "notes": n,
        "non_finite": int((~finite).sum()),
        "silent": int(silent.sum()),
        "unvoiced": int((finite & ~silent & ~voiced).sum()),
        "in_tune": int(in_tune.sum()),
        "in_tune_fraction": round(float(in_tune.mean()), 4) if n else float("nan"),
        "octave_errors": int(octave.sum()),
        "median_abs_cents": (round(float(np.median(np.abs(errors[voiced]))), 2)
                             if voiced.any() else None),
        "peak_median": round(float(np.median(peaks)), 4) if n else None,
        "per_pitch_in_tune": per_pitch,
    }


#: The descriptors a direction is measured against: name -> (slider label, unit, function of
#: (note [T], sample rate)).
DESCRIPTORS: dict[str, tuple[str, str, Callable[[np.ndarray, int], float]]] = {
    "centroid": ("brightness", "Hz", spectral_centroid),
    "decay": ("decay", "s", decay_time),
    "attack": ("attack", "s", attack_time),
    "level": ("level", "dB", lambda x, _rate: level_db(x)),
}
#: Coefficients (standard deviations) each direction is swept over.
SWEEP = (-2.0, -1.0, 0.0, 1.0, 2.0)
#: A direction is labelled with a descriptor when that descriptor moves monotonically (Spearman
#: rho = +-1 over :data:`SWEEP`, with the majority's sign) on at least this fraction of notes.
LABEL_FRACTION = 2.0 / 3.0


def descriptors(notes: np.ndarray, sample_rate: int) -> np.ndarray:
    """[N, len(DESCRIPTORS)]: every descriptor of every note [N, T]."""
    return np.array([[fn(x, sample_rate) for _, _, fn in DESCRIPTORS.values()] for x in notes])


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation of two [n] sequences (NaN if either is constant or has NaN)."""
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        return float("nan")
    rx, ry = rankdata(x), rankdata(y)
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def direction_report(model: GANSynthModel, directions: Directions, z: np.ndarray,
                     pitches: np.ndarray, components: int) -> list[dict[str, Any]]:
    """What each of the first ``components`` directions changes.

    Every direction alone is swept over :data:`SWEEP` on the same notes (z [N, Z], pitches [N]);
    for every note and descriptor the Spearman correlation between coefficient and descriptor is
    computed. Returns per component ``{"component", "var_ratio", "in_tune_fraction": [at -2, at
    +2], "descriptors": {name: {"spearman_median", "monotonic_fraction", "sign", "change"}},
    "label": name or None}``: ``monotonic_fraction`` is the fraction of notes on which the
    descriptor moves strictly monotonically in the direction (``sign``) of most notes,
    ``change`` the mean of (value at +2) - (value at -2); ``label`` is the slider label of the
    descriptor with the highest such fraction when it reaches :data:`LABEL_FRACTION`.
    """
    out = []
    for i in range(min(components, directions.count)):
        values = []  # [len(SWEEP), N, D]
        tune = []
        for coefficient in SWEEP:
            c = np.zeros(i + 1, dtype=np.float32)
            c[i] = coefficient
            notes = _generate(model, z, pitches, directions=directions, coefficients=c)
            values.append(descriptors(notes, model.sample_rate))
            if abs(coefficient) == max(SWEEP):
                tune.append(pitch_report(notes, pitches, model.sample_rate)["in_tune_fraction"])
        table = np.stack(values)
        sweep = np.asarray(SWEEP)
        summary: dict[str, dict[str, float | None]] = {}
        for d, name in enumerate(DESCRIPTORS):
            rho = np.array([spearman(sweep, table[:, n, d]) for n in range(table.shape[1])])
            known = rho[np.isfinite(rho)]
            sign = 1.0 if np.sum(known > 0) >= np.sum(known < 0) else -1.0
            summary[name] = {
                "spearman_median": round(float(np.median(known)), 3) if len(known) else None,
                "monotonic_fraction": round(float(np.mean(np.isclose(rho * sign, 1.0))), 3),
                "sign": sign,
                "change": round(float(np.nanmean(table[-1, :, d] - table[0, :, d])), 4),
            }
        fraction = {name: float(summary[name]["monotonic_fraction"] or 0.0) for name in summary}
        best = max(fraction, key=fraction.__getitem__)
        label = DESCRIPTORS[best][0] if fraction[best] >= LABEL_FRACTION else None
        out.append({
            "component": i,
            "var_ratio": round(float(directions.var_ratio[i]), 5),
            "in_tune_fraction": tune,
            "descriptors": summary,
            "label": label,
        })
    return out


def direction_labels(components: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The measured labels of a :func:`direction_report`, as stored in a directions file's
    ``meta["labels"]``: ``{"<index>": {"label", "descriptor", "sign", "monotonic_fraction",
    "spearman_median"}}`` for the labelled components only (a label nobody measured is never
    written)."""
    labels = {}
    for c in components:
        if c["label"] is None:
            continue
        name = next(n for n, (label, _, _) in DESCRIPTORS.items() if label == c["label"])
        d = c["descriptors"][name]
        labels[str(c["component"])] = {"label": c["label"], "descriptor": name, "sign": d["sign"],
                                       "monotonic_fraction": d["monotonic_fraction"],
                                       "spearman_median": d["spearman_median"]}
    return labels


def evaluate(model: str | Path | GANSynthModel, count: int = 200, seed: int = 0,
             directions: str | Path | None = None, components: int = 4,
             device: str | None = None) -> dict[str, Any]:
    """Evaluate a model (folder or loaded model); see the module docstring.

    Args:
        model: model folder or :class:`GANSynthModel`.
        count: number of random notes (>= 1).
        seed: seeds z and the pitch draw.
        directions: optional directions file (``ganspace.space.directions`` format).
        components: how many of the first directions to measure (on ``min(count, 16)`` notes).
        device: for a folder: "cpu", "cuda" or None (CUDA when available).
    Returns:
        JSON-ready dict: ``model`` (pitches, progress, provenance), ``pitch`` (see
        :func:`pitch_report`), ``seconds`` (generation), ``directions`` (when given).
    """
    if count < 1:
        raise InputError(f"count must be at least 1, got {count}")
    m = model if isinstance(model, GANSynthModel) else load_model(model, device=device)
    rng = np.random.default_rng(seed)
    pitches = rng.choice(np.asarray(m.pitches), size=count)
    z = m.random_z(count, seed=seed)
    t0 = time.perf_counter()
    notes = _generate(m, z, pitches)
    seconds = time.perf_counter() - t0
    report: dict[str, Any] = {
        "model": {
            "path": None if isinstance(model, GANSynthModel) else str(model),
            "pitches": [int(min(m.pitches)), int(max(m.pitches))],
            "num_pitches": len(m.pitches),
            "progress": float(m.generator.cfg.progress),
            "num_blocks": int(m.generator.cfg.num_blocks),
            "images_seen": (m.provenance or {}).get("global_step"),
        },
        "seed": seed,
        "pitch": pitch_report(notes, pitches, m.sample_rate),
        "seconds": round(seconds, 2),
    }
    if directions is not None:
        d = load_directions(directions)
        n = min(count, 16)
        base = np.nanmean(descriptors(notes[:n], m.sample_rate), axis=0)
        report["directions"] = {
            "path": str(directions),
            "layer": d.layer,
            "notes": n,
            "baseline": {name: round(float(v), 4)
                         for name, v in zip(DESCRIPTORS, base, strict=True)},
            "components": direction_report(m, d, z[:n], pitches[:n], components),
        }
    return report


def format_report(report: dict[str, Any]) -> str:
    """Human-readable summary of :func:`evaluate`'s report."""
    m, p = report["model"], report["pitch"]
    lines = [
        f"model: {m['path'] or '(in memory)'}  pitches {m['pitches'][0]}..{m['pitches'][1]} "
        f"({m['num_pitches']})  progress {m['progress']}  images seen {m['images_seen']}",
        f"notes: {p['notes']} random (seed {report['seed']}), generated in {report['seconds']} s",
        f"in tune (+-{IN_TUNE_CENTS:.0f} cents): {p['in_tune']}/{p['notes']} = "
        f"{100.0 * p['in_tune_fraction']:.1f} %   median |error| {p['median_abs_cents']} cents",
        f"non-finite {p['non_finite']}  silent {p['silent']}  unvoiced {p['unvoiced']}  "
        f"octave errors {p['octave_errors']}  median peak {p['peak_median']}",
    ]
    if "directions" in report:
        d = report["directions"]
        base = "  ".join(f"{name} {d['baseline'][name]} {unit}"
                         for name, (_, unit, _) in DESCRIPTORS.items())
        lines.append(f"directions {d['path']} (layer {d['layer']}), each swept "
                     f"{SWEEP[0]:+g}..{SWEEP[-1]:+g} on {d['notes']} notes; baseline {base}")
        lines.append("  per descriptor: change (+2 minus -2), median Spearman rho, fraction of "
                     "notes where it moves monotonically")
        for c in d["components"]:
            cells = "  ".join(
                f"{name} {v['change']:+.4g} {DESCRIPTORS[name][1]} rho {v['spearman_median']} "
                f"mono {v['monotonic_fraction']:.2f}" for name, v in c["descriptors"].items())
            label = f"label {c['label']!r}" if c["label"] else "no label"
            lines.append(f"  c{c['component']} (var {c['var_ratio']:.3f}, {label}, in tune "
                         f"{c['in_tune_fraction'][0]:.2f} / {c['in_tune_fraction'][1]:.2f}): "
                         f"{cells}")
    return "\n".join(lines)
