"""Fidelity of reduced precision, measured as a listener would: the same notes generated in
float32 and in the reduced precision, compared on their log-mel spectrograms and their pitch.

Judge it on trained weights (a random generator amplifies every rounding into phase noise).

- **Log-mel difference**: both notes' audio is turned back into Magenta's log mel power
  spectrogram (:func:`ganspace.engine.audio.audio_to_melspecgrams`), in dB; the absolute
  difference is taken over the bins within :data:`RANGE_DB` of the float32 note's loudest bin
  (quieter bins are inaudible under the note), and its median over all those bins of all notes
  is the figure (target: at most 1 dB).
- **Pitch**: the in-tune fraction of both sets of notes (the caller passes the estimator, e.g.
  ``eval``'s), which should stay within one point.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from ganspace.engine import audio
from ganspace.engine.model import GANSynthModel

RANGE_DB = 60.0
"""Bins more than this below a note's loudest bin are left out of the comparison."""
InTune = Callable[[np.ndarray, np.ndarray, int], float]
"""``in_tune(notes [N, T], pitches [N], sample_rate) -> fraction`` of notes in tune."""


@dataclass
class Fidelity:
    """A reduced precision compared with float32 on the same notes (see module docstring)."""

    precision: str
    notes: int
    median_db: float  # median |dB difference| over the bins within RANGE_DB of each note's peak
    worst_note_db: float  # the largest per-note median
    in_tune_float32: float | None  # in-tune fractions, None without an estimator
    in_tune: float | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)

    def describe(self) -> str:
        """One line, e.g. ``bfloat16 vs float32 on 64 notes: median 0.31 dB (worst note
        0.52 dB), in tune 81.2 % vs 81.2 %``."""
        text = (f"{self.precision} vs float32 on {self.notes} notes: median {self.median_db:.2f} "
                f"dB (worst note {self.worst_note_db:.2f} dB)")
        if self.in_tune is not None and self.in_tune_float32 is not None:
            text += f", in tune {100 * self.in_tune:.1f} % vs {100 * self.in_tune_float32:.1f} %"
        return text


def logmel_db(notes: torch.Tensor) -> torch.Tensor:
    """Log mel power spectrogram in dB of audio [N, 64000] (float32) -> [N, 128, 1024]."""
    return audio.audio_to_melspecgrams(notes)[..., 0] * (10.0 / math.log(10.0))


def logmel_difference_db(ref: np.ndarray, test: np.ndarray,
                         range_db: float = RANGE_DB) -> tuple[float, np.ndarray]:
    """Compare notes [N, 64000] with reference notes [N, 64000].

    Returns:
        ``(median, per_note)``: the median absolute dB difference over every bin within
        ``range_db`` of its reference note's loudest bin, and the per-note medians [N].
    """
    r = logmel_db(torch.as_tensor(ref, dtype=torch.float32)).flatten(1)
    t = logmel_db(torch.as_tensor(test, dtype=torch.float32)).flatten(1)
    keep = r >= r.max(dim=1, keepdim=True).values - range_db
    diff = (t - r).abs()
    per_note = np.array([float(d[k].median()) for d, k in zip(diff, keep, strict=True)])
    return float(diff[keep].median()), per_note


def measure_fidelity(model: GANSynthModel, precision: str, count: int = 32, seed: int = 0,
                     in_tune: InTune | None = None) -> Fidelity:
    """Generate ``count`` random notes (seeded z, pitches drawn from the model's) with ``model``'s
    generator in float32 and in ``precision`` and compare them.

    Args:
        model: any loaded model (its weights are shared, not copied).
        precision: the precision to judge (resolved on the model's device: ``auto`` works).
        count: notes (>= 1).
        seed: seeds z and the pitches.
        in_tune: pitch estimator; without it the in-tune fractions are None.
    """
    low = model.with_precision(precision)
    ref = model.with_precision("float32")
    rng = np.random.default_rng(seed)
    pitches = rng.choice(np.asarray(model.pitches), size=count)
    z = model.random_z(count, seed=seed)
    a = ref.generate(z, pitches)
    b = low.generate(z, pitches)
    median, per_note = logmel_difference_db(a, b)
    return Fidelity(
        precision=low.precision, notes=count, median_db=median,
        worst_note_db=float(per_note.max()),
        in_tune_float32=None if in_tune is None else in_tune(a, pitches, model.sample_rate),
        in_tune=None if in_tune is None else in_tune(b, pitches, model.sample_rate),
    )
