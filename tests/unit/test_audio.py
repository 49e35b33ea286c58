"""Audio pipeline without Magenta's fixture: deterministic phase below the floor, a round trip,
input checks (the parity tests are in tests/parity/test_audio_parity.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import rel_err, wrapped_diff

from ganspace.engine import audio
from ganspace.errors import InputError


def harmonic_tone() -> torch.Tensor:
    """[1, 64000] float32: 440 Hz + 4 harmonics (amplitudes 1/2^k), 0.1 s attack, decay."""
    t = torch.arange(audio.AUDIO_LENGTH, dtype=torch.float64) / audio.SAMPLE_RATE
    envelope = torch.clamp(t / 0.1, max=1.0) * torch.exp(-t)
    partials = sum(0.5**k * torch.sin(2 * math.pi * 440.0 * (k + 1) * t + 0.3 * k)
                   for k in range(5))
    return (0.5 * envelope * partials).float()[None]


def test_features_deterministic_below_phase_floor() -> None:
    """The phase of silent bins is rounding noise (its sign of zero differs between CPUs); with the
    floor, signed zeros, sub-floor noise and the all-padding first frames all give IF exactly 0."""
    zeros = torch.zeros(2, audio.AUDIO_LENGTH)
    zeros[1] = -0.0
    mel = audio.audio_to_melspecgrams(zeros)
    assert torch.equal(mel[..., 1], torch.zeros_like(mel[..., 1]))
    tone = harmonic_tone()
    tone[:, 40000:] = 0.0
    noisy = tone + 1e-9 * torch.randn(tone.shape, generator=torch.Generator().manual_seed(0))
    clean_mel, noisy_mel = audio.audio_to_melspecgrams(torch.cat([tone, noisy]))
    assert torch.equal(clean_mel[:3, :, 1], torch.zeros(3, 1024))  # frames 0..2: padding only
    # Frame j covers samples 512 j - 3072 .. 512 j - 1025: frames 85.. lie in the zeroed tail.
    assert torch.equal(clean_mel[85:, :, 1], torch.zeros(43, 1024))
    assert torch.equal(noisy_mel[85:, :, 1], torch.zeros(43, 1024))
    # Without the floor, Magenta's literal IF of the same silent bins is noise; where the tone
    # is loud, the floor changes nothing.
    literal = audio.audio_to_melspecgrams(noisy, phase_floor=None)[0]
    assert float(literal[85:, :, 1].abs().mean()) > 0.1
    loud = clean_mel[10:80, :, 0] > math.log(1e-2)
    assert int(loud.sum()) > 1000
    same = wrapped_diff(clean_mel[10:80, :, 1][loud].numpy(), literal[10:80, :, 1][loud].numpy())
    assert np.median(same) <= 1e-4


def test_round_trip_harmonic_tone() -> None:
    """audio -> mel -> audio. Magenta's mel-IF representation is lossy (mostly the phase: the
    weighted mel phases, wrapped again as mel IF, do not map back), so the bound is loose, but
    it separates the right pipeline (measured 0.136) from a 1-sample shift (0.38), a one-hop
    shift (1.0) and a flipped sign (1.9)."""
    tone = harmonic_tone()
    mel = audio.audio_to_melspecgrams(tone)
    assert mel.shape == (1, 128, 1024, 2)
    assert float(mel[..., 1].abs().max()) <= 1.0  # mel IF / pi is a principal value
    back = audio.melspecgrams_to_audio(mel)
    assert rel_err(back, tone) <= 0.2


def test_input_errors() -> None:
    with pytest.raises(InputError, match="shape"):
        audio.melspecgrams_to_audio(torch.zeros(2, 64, 1024, 2))
    with pytest.raises(InputError, match="float32 or float64"):
        audio.melspecgrams_to_audio(torch.zeros(1, 128, 1024, 2, dtype=torch.int32))
    with pytest.raises(InputError, match="shape"):
        audio.audio_to_melspecgrams(torch.zeros(64000))
