"""Audio pipeline: mel matrices, mel <-> waveform transforms and normalisation vs Magenta 2.1.4.

References: the fixture saved by Magenta itself, plus literal float64 numpy transcriptions of
Magenta's ``SpecgramsHelper`` code paths (frame loops and dense matrices, no shortcuts), which
check the torch shortcuts (gathers, skipped log/IF detour, cropped overlap-add) independently.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import rel_err, wrapped_diff

from ganspace.engine import audio
from ganspace.errors import InputError

AUDIO_TOL = 1e-3  # relative (max abs diff / max abs reference), docs: gansynth-format.md


@pytest.fixture(scope="module")
def ref(magenta_small: Path) -> dict[str, np.ndarray]:
    with np.load(magenta_small / "reference_io.npz") as data:
        return dict(data)


@pytest.fixture(scope="module")
def hparams(magenta_small: Path) -> dict[str, object]:
    return json.loads((magenta_small / "experiment.json").read_text())


# --- literal numpy transcriptions of Magenta (float64) -------------------------------------------


def np_instantaneous_frequency(phase: np.ndarray) -> np.ndarray:
    """spectral_ops.instantaneous_frequency(unwrap(...)), time axis 0, returns IF / pi."""
    dd = np.diff(phase, axis=0)
    ddmod = np.mod(dd + np.pi, 2.0 * np.pi) - np.pi
    ddmod = np.where((ddmod == -np.pi) & (dd > 0), np.pi, ddmod)
    unwrapped = phase + np.concatenate([np.zeros_like(phase[:1]), np.cumsum(ddmod - dd, axis=0)])
    return np.concatenate([unwrapped[:1], np.diff(unwrapped, axis=0)]) / np.pi


def np_hann() -> np.ndarray:
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(2048) / 2048)


def np_melspecgrams_to_waves(mel: np.ndarray) -> np.ndarray:
    """SpecgramsHelper.melspecgrams_to_waves for one note: [128, 1024, 2] -> [64000]."""
    _, mel2l = audio.mel_matrices()
    mag2 = np.exp(mel[..., 0]) @ mel2l  # melspecgrams_to_specgrams
    logmag = 0.5 * np.log(mag2 + 1e-6)
    phase = np.cumsum(mel[..., 1] * np.pi, axis=0) @ mel2l
    ifreq = np_instantaneous_frequency(phase)
    stft = np.exp(logmag) * np.exp(1j * np.cumsum(ifreq * np.pi, axis=0))  # specgrams_to_stfts
    stft = np.pad(stft, [[0, 0], [1, 0]])  # stfts_to_waves: zero DC bin, inverse_stft
    window = np_hann()
    denom = np.tile((window**2).reshape(4, 512).sum(axis=0), 4)
    frames = np.fft.irfft(stft, n=2048) * (window / denom)
    waves = np.zeros(512 * 127 + 2048)
    for i, frame in enumerate(frames):
        waves[512 * i : 512 * i + 2048] += frame
    return waves[3072:]


def np_waves_to_melspecgrams(wave: np.ndarray) -> np.ndarray:
    """SpecgramsHelper.waves_to_melspecgrams for one note: [64000] -> [128, 1024, 2]."""
    l2mel, _ = audio.mel_matrices()
    padded = np.pad(wave.astype(np.float64), [3072, 0])  # waves_to_stfts
    frames = np.stack([padded[512 * i : 512 * i + 2048] for i in range(128)]) * np_hann()
    stft = np.fft.rfft(frames)[:, 1:]
    logmag = np.log(np.abs(stft) + 1e-6)  # stfts_to_specgrams
    ifreq = np_instantaneous_frequency(np.angle(stft))
    mag2 = np.exp(2.0 * logmag)  # specgrams_to_melspecgrams
    phase = np.cumsum(ifreq * np.pi, axis=0)
    logmel = np.log(mag2 @ l2mel + 1e-6)
    mel_if = np_instantaneous_frequency(phase @ l2mel)
    return np.stack([logmel, mel_if], axis=-1)


# --- mel matrices ---------------------------------------------------------------------------------


def test_mel_matrices_match_fixture(ref: dict[str, np.ndarray]) -> None:
    l2mel, mel2l = audio.mel_matrices()
    assert l2mel.shape == mel2l.shape == (1024, 1024)
    assert l2mel.dtype == mel2l.dtype == np.float64
    # numpy's vectorised log/exp differ by a few ulps between CPUs and builds (measured up to
    # 2.7e-12 relative); the matrices are used in float32, where 1e-9 is far below rounding.
    np.testing.assert_allclose(l2mel, ref["l2mel"], rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(mel2l, ref["mel2l"], rtol=1e-9, atol=1e-12)
    # The sparsity the gathers rely on (a property of Magenta's matrices, aliasing included).
    assert (mel2l != 0).sum(axis=0).max() == 2
    assert (l2mel != 0).sum(axis=0).max() == 6


# --- inverse: mel spectrogram -> audio ------------------------------------------------------------


def test_melspecgrams_to_audio_matches_magenta(ref: dict[str, np.ndarray]) -> None:
    # Measured: 4.1e-5 against both references.
    wave = audio.melspecgrams_to_audio(torch.from_numpy(ref["generator_output_denorm"]))
    assert wave.shape == (4, 64000) and wave.dtype == torch.float32
    assert rel_err(wave, ref["audio_api"]) <= AUDIO_TOL
    assert rel_err(wave, ref["waves_graph"][..., 0]) <= AUDIO_TOL


def test_transition_model_audio(ref: dict[str, np.ndarray], hparams: dict[str, object]) -> None:
    # Measured: 6.7e-5 (progress 5.5, blocks 6 and 7 blended).
    spec = audio.denormalize(torch.from_numpy(ref["trans_predictions_tanh_blend"]), hparams)
    wave = audio.melspecgrams_to_audio(spec)
    assert rel_err(wave, ref["trans_waves_graph"][..., 0]) <= AUDIO_TOL


def test_inverse_equals_magenta_code_path(ref: dict[str, np.ndarray]) -> None:
    """The shortcut (sqrt(mag2 + eps), phase without the log/IF detour) is Magenta's path."""
    mel = ref["generator_output_denorm"][:1].astype(np.float64)
    literal = np_melspecgrams_to_waves(mel[0])
    assert rel_err(literal, ref["audio_api"][0]) <= AUDIO_TOL
    wave64 = audio.melspecgrams_to_audio(torch.from_numpy(mel))
    assert wave64.dtype == torch.float64
    assert rel_err(wave64[0], literal) <= 1e-9  # measured 6e-14
    assert rel_err(audio.melspecgrams_to_audio(torch.from_numpy(mel).float())[0], literal) <= 1e-4


def test_linear_specgrams_match_fixture(ref: dict[str, np.ndarray]) -> None:
    # Measured: log amplitude 4.8e-7 abs, IF / pi 3.9e-5 abs.
    lin = audio.melspecgrams_to_specgrams(torch.from_numpy(ref["generator_output_denorm"]))
    assert lin.shape == (4, 128, 1024, 2) and lin.dtype == torch.float32
    lin_np = lin.numpy()
    np.testing.assert_allclose(lin_np[..., 0], ref["linear_specgrams"][..., 0], rtol=0, atol=1e-4)
    assert wrapped_diff(lin_np[..., 1], ref["linear_specgrams"][..., 1]).max() <= 1e-3


def test_batch_independence_and_dtypes(ref: dict[str, np.ndarray]) -> None:
    spec = torch.from_numpy(ref["generator_output_denorm"][:3])
    batch = audio.melspecgrams_to_audio(spec)
    single = audio.melspecgrams_to_audio(spec[1:2])
    assert batch.shape == (3, 64000) and single.shape == (1, 64000)
    assert rel_err(single[0], batch[1]) <= 1e-6
    strided = spec.permute(0, 3, 1, 2).contiguous().permute(0, 2, 3, 1)  # NHWC view of NCHW
    assert torch.equal(audio.melspecgrams_to_audio(strided), batch)
    assert audio.melspecgrams_to_audio(spec[:0]).shape == (0, 64000)
    assert audio.audio_to_melspecgrams(torch.zeros(0, 64000)).shape == (0, 128, 1024, 2)


def test_tables_are_cached(ref: dict[str, np.ndarray]) -> None:
    spec = torch.from_numpy(ref["generator_output_denorm"][:1])
    audio.melspecgrams_to_audio(spec)
    misses = audio.audio_tables.cache_info().misses
    audio.melspecgrams_to_audio(spec)
    audio.audio_to_melspecgrams(torch.zeros(1, 64000))
    assert audio.audio_tables.cache_info().misses == misses


# --- forward: audio -> mel spectrogram ------------------------------------------------------------


def test_audio_to_melspecgrams_equals_magenta_code_path(ref: dict[str, np.ndarray]) -> None:
    wave = ref["audio_api"][:1].astype(np.float64)
    literal = np_waves_to_melspecgrams(wave[0])
    mel64 = audio.audio_to_melspecgrams(torch.from_numpy(wave), phase_floor=None)[0].numpy()
    np.testing.assert_allclose(mel64[..., 0], literal[..., 0], rtol=0, atol=1e-9)
    assert wrapped_diff(mel64[..., 1], literal[..., 1]).max() <= 1e-9
    mel32 = audio.audio_to_melspecgrams(torch.from_numpy(wave).float(), phase_floor=None)
    assert mel32.shape == (1, 128, 1024, 2) and mel32.dtype == torch.float32
    # float32 vs float64: log power of near-silent bins moves most; IF / pi stays close.
    np.testing.assert_allclose(mel32[0, ..., 0].numpy(), literal[..., 0], rtol=0, atol=1e-2)
    assert np.median(wrapped_diff(mel32[0, ..., 1].numpy(), literal[..., 1])) <= 1e-4


# --- normalisation and input checks ---------------------------------------------------------------


def test_denormalize_normalize(ref: dict[str, np.ndarray], hparams: dict[str, object]) -> None:
    tanh = torch.from_numpy(ref["predictions_tanh_blend"])
    spec = audio.denormalize(tanh, hparams)
    assert rel_err(spec, ref["generator_output_denorm"]) <= 1e-6  # measured 6e-8
    assert rel_err(audio.normalize(spec, hparams), tanh) <= 1e-6
    assert audio.normalize(spec * 100.0, hparams).abs().max() == 1.0  # Magenta clips to [-1, 1]
    with pytest.raises(InputError, match="p_normalizer_a"):
        audio.denormalize(tanh, {"mag_normalizer_a": 1.0, "mag_normalizer_b": 0.0})


