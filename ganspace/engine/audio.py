"""Magenta GANSynth's mel spectrogram <-> waveform transforms, in torch (CPU or GPU).

Conventions (see ``docs/architecture.md``): a mel spectrogram is ``[B, 128, 1024, 2]`` (NHWC:
batch, time frames, mel bins, channel), channel 0 = log mel power (natural log), channel 1 = mel
instantaneous frequency divided by pi (radians per hop / pi). Audio is ``[B, 64000]`` at 16 kHz,
not normalised. STFT: n_fft 2048, hop 512, periodic Hann window, all 3072 padding samples at the
front, DC bin dropped (bins 1..1024 kept, Nyquist included).

Everything mirrors Magenta 2.1.4's ``magenta/models/gansynth/lib/specgrams_helper.py``
(``SpecgramsHelper`` with audio_length 64000, spec_shape (128, 1024), overlap 0.75,
mel_downscale 1, ifreq True, discard_dc True) and ``spectral_ops.py``; each function names the
Magenta function it reproduces. Tensors are created on the input's device and dtype (float32 or
float64), so the same code runs on CPU and CUDA.

Implementation notes:

- Internally spectrograms are kept frequency-major, ``[F, N]`` with ``N = B * T`` and time
  fastest, so the mel <-> linear maps become row gathers and time-axis operations (cumsum,
  differences) run along contiguous memory.
- The mel matrices are extremely sparse (``MEL2L``: at most 2 mel bins per linear bin;
  ``L2MEL``: at most 6 linear bins per mel bin), so ``x @ M`` is computed as a sum of a few
  weighted row gathers instead of a dense matmul: about 1 ms instead of 12-23 ms per product at
  batch 8 on 2 CPU cores, and on GPU immune to TF32 matmul rounding, which would wreck the
  phase channel (accumulated phases reach hundreds of radians).
- A contiguous NHWC spectrogram is the fast input (one blocked transpose); other layouts, e.g.
  a permuted view of an NCHW tensor, are copied first.
- The transforms are data/inference paths and run without autograd.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ganspace.errors import InputError

SAMPLE_RATE = 16000
AUDIO_LENGTH = 64000
N_FFT = 2048
HOP = 512
N_FRAMES = 128
N_BINS = N_FFT // 2
#: Front padding of the waveform before framing: 512 * 127 + 2048 - 64000 = 3072 samples.
PAD_LEFT = HOP * (N_FRAMES - 1) + N_FFT - AUDIO_LENGTH
_OVERLAPS = N_FFT // HOP
_EPS = 1.0e-6  # SpecgramsHelper._eps, used by _safe_log and in the magnitude of the inverse
#: STFT bins with ``|stft|`` at or below this amplitude get phase 0 in :func:`audio_to_melspecgrams`
#: (about -108 dB below a 0.5-peak sinusoid's main lobe, and 30x above float32 FFT rounding):
#: their phase is rounding noise, which differs between CPUs and FFT libraries.
PHASE_FLOOR = 1.0e-3


def _hertz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """spectral_ops.hertz_to_mel: HTK mel, 1127 * ln(1 + f / 700)."""
    return 1127.0 * np.log(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def _mel_to_hertz(mel: np.ndarray | float) -> np.ndarray:
    """spectral_ops.mel_to_hertz: 700 * (exp(m / 1127) - 1)."""
    return 700.0 * (np.exp(np.asarray(mel, dtype=np.float64) / 1127.0) - 1.0)


def mel_matrices() -> tuple[np.ndarray, np.ndarray]:
    """Magenta's linear <-> mel matrices for 16 kHz, n_fft 2048, 1024 bins, float64.

    Mirrors ``spectral_ops.linear_to_mel_weight_matrix(1024, 1024, 16000, 0, 8000)`` and
    ``SpecgramsHelper._mel_to_linear_matrix``, including Magenta's aliasing quirk: the lower,
    center and upper band edges are overlapping views of one buffer, so widening a narrow band
    in place also moves its neighbours' edges for the bands processed after it.

    Returns:
        ``(l2mel, mel2l)``: ``l2mel`` ``[1024 lin, 1024 mel]`` and its pseudo-inverse ``mel2l``
        ``[1024 mel, 1024 lin]``; fresh arrays on every call. Magenta lays the linear axis out
        as ``linspace(0, 8000, 1024)`` although the DC-dropped spectrogram holds bins
        ``k * 7.8125 Hz``, k = 1..1024: linear index 0 (the 7.8 Hz bin, taken for DC) and 1023
        (Nyquist) get no weight, and mel bin 0 is empty (its log power is always log(1e-6)).
    """
    nyquist = SAMPLE_RATE / 2.0
    linear_hz = np.linspace(0.0, nyquist, N_BINS)[1:, np.newaxis]  # [1023, 1], HTK drops DC
    edges = np.linspace(_hertz_to_mel(0.0), _hertz_to_mel(nyquist), N_BINS + 2)
    lower, center, upper = edges[0:-2], edges[1:-1], edges[2:]  # views: the quirk
    min_width_hz = 1.5 * nyquist / N_BINS
    for i in range(N_BINS):
        if _mel_to_hertz(upper[i]) - _mel_to_hertz(lower[i]) < min_width_hz:
            rhs = 0.5 * min_width_hz / (_mel_to_hertz(center[i]) + 700.0)
            dm = 1127.0 * np.log(rhs + np.sqrt(1.0 + rhs**2))
            lower[i] = center[i] - dm
            upper[i] = center[i] + dm
    lower_hz = _mel_to_hertz(lower)[np.newaxis, :]
    center_hz = _mel_to_hertz(center)[np.newaxis, :]
    upper_hz = _mel_to_hertz(upper)[np.newaxis, :]
    lower_slopes = (linear_hz - lower_hz) / (center_hz - lower_hz)
    upper_slopes = (upper_hz - linear_hz) / (upper_hz - center_hz)
    weights = np.maximum(0.0, np.minimum(lower_slopes, upper_slopes))
    l2mel = np.pad(weights, [[1, 0], [0, 0]])
    col_sums = np.sum(l2mel @ l2mel.T, axis=0)
    d = np.array([1.0 / x if np.abs(x) > 1.0e-8 else x for x in col_sums])
    mel2l = l2mel.T @ np.diag(d)
    return l2mel, mel2l


def _as_gather(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sparse form of ``y = x @ matrix`` (``matrix`` ``[n_in, n_out]``) as ``K`` row gathers.

    Returns:
        ``index`` int64 ``[K, n_out]`` and ``weight`` float64 ``[K, n_out]`` with
        ``y[j] = sum_k x[index[k, j]] * weight[k, j]``; ``K`` is the most non-zeros in a column,
        shorter columns are padded with index 0 and weight 0.
    """
    nonzero = [np.flatnonzero(column) for column in matrix.T]
    k = max(len(rows) for rows in nonzero)
    index = np.zeros((k, matrix.shape[1]), dtype=np.int64)
    weight = np.zeros((k, matrix.shape[1]), dtype=np.float64)
    for j, rows in enumerate(nonzero):
        index[: len(rows), j] = rows
        weight[: len(rows), j] = matrix[rows, j]
    return index, weight


@dataclass(frozen=True)
class _Tables:
    """Gathers and windows for one (device, dtype).

    Float weights are computed in float64 and cast once, like Magenta's ``tf.to_float``.
    """

    mel2l_index: Tensor  # [2, 1025] int64; output row 0 is the DC bin (weight 0)
    mel2l_weight: Tensor  # [2, 1025, 1]
    l2mel_index: Tensor  # [6, 1024] int64
    l2mel_weight: Tensor  # [6, 1024, 1]
    window: Tensor  # [2048] periodic Hann (tf.signal.hann_window, periodic=True)
    synthesis_window: Tensor  # [4, 512] Hann / sum of the 4 overlapping squared Hanns


@cache
def _host_tables() -> dict[str, np.ndarray]:
    """The :class:`_Tables` fields as numpy arrays, built once per process."""
    l2mel, mel2l = mel_matrices()
    mel2l_index, mel2l_weight = _as_gather(np.pad(mel2l, [[0, 0], [1, 0]]))  # + zero DC column
    l2mel_index, l2mel_weight = _as_gather(l2mel)
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(N_FFT) / N_FFT)
    # tf.signal.inverse_stft_window_fn: window / sum over the overlapping frames of window^2.
    denom = np.tile(np.sum(np.square(window).reshape(_OVERLAPS, HOP), axis=0), _OVERLAPS)
    return {
        "mel2l_index": mel2l_index,
        "mel2l_weight": mel2l_weight[:, :, None],
        "l2mel_index": l2mel_index,
        "l2mel_weight": l2mel_weight[:, :, None],
        "window": window,
        "synthesis_window": (window / denom).reshape(_OVERLAPS, HOP),
    }


@cache
def audio_tables(device: torch.device, dtype: torch.dtype) -> _Tables:
    """The tables on ``device``, float ones in ``dtype``; built once per (device, dtype) (build
    them before tracing: under a tracer they would be cached as fake tensors)."""
    return _Tables(
        **{
            name: torch.as_tensor(
                array, dtype=torch.int64 if name.endswith("index") else dtype, device=device
            )
            for name, array in _host_tables().items()
        }
    )


def _gather_matmul(x: Tensor, index: Tensor, weight: Tensor) -> Tensor:
    """``(x.T @ M).T`` for frequency-major ``x`` ``[n_in, N]`` and ``M`` in :func:`_as_gather` form.

    Returns ``[n_out, N]``; same arithmetic as the dense product, minus the zero terms.
    """
    out = x.index_select(0, index[0]) * weight[0]
    for k in range(1, index.shape[0]):
        out.addcmul_(x.index_select(0, index[k]), weight[k])
    return out


def _instantaneous_frequency(phase: Tensor) -> Tensor:
    """``spectral_ops.instantaneous_frequency(phase)`` with time on the last axis: IF / pi.

    ``phase`` ``[..., T]`` in radians. Reproduces Magenta's ``unwrap``, which differs from
    ``np.unwrap``: its ``abs(dd) < discont`` test is computed but never used, so every
    difference is replaced by its principal value in [-pi, pi] (``-pi`` becomes ``pi`` when the
    raw difference is positive). The first frame keeps the (unwrapped) phase itself.
    """
    dd = torch.diff(phase, dim=-1)
    ddmod = torch.remainder(dd + math.pi, 2.0 * math.pi) - math.pi
    ddmod = torch.where((ddmod == -math.pi) & (dd > 0), math.pi, ddmod)
    unwrapped = phase.clone()
    unwrapped[..., 1:] += torch.cumsum(ddmod - dd, dim=-1)
    dphase = torch.diff(unwrapped, dim=-1)
    return torch.cat([unwrapped[..., :1], dphase], dim=-1) / math.pi


def _check(x: Tensor, shape: tuple[int, ...], what: str) -> None:
    """Raise InputError unless ``x`` is a float32/float64 tensor ``[B, *shape]``."""
    if not isinstance(x, Tensor) or x.dtype not in (torch.float32, torch.float64):
        raise InputError(f"{what} must be a float32 or float64 torch tensor")
    if x.dim() != len(shape) + 1 or tuple(x.shape[1:]) != shape:
        want = ", ".join(["B", *map(str, shape)])
        raise InputError(f"{what} must have shape [{want}], got {list(x.shape)}")


def _mel_to_linear(spec: Tensor, tables: _Tables) -> tuple[Tensor, Tensor]:
    """Linear power and phase of a mel spectrogram, frequency-major with a DC row.

    Mirrors the first half of ``SpecgramsHelper.melspecgrams_to_specgrams``:
    ``mag2 = exp(logmel) @ MEL2L``, ``phase = cumsum(mel_IF * pi, time) @ MEL2L``.

    Args:
        spec: ``[B, T, 1024, 2]`` denormalised mel spectrogram.

    Returns:
        ``(mag2, phase)``, each ``[1025, B * T]`` (row 0 = DC, exactly 0; rows 1..1024 = STFT
        bins 1..1024): linear power (amplitude^2) and phase in radians.
    """
    b, t = spec.shape[:2]
    # One blocked transpose of the interleaved channels: [B*T, 1024*2] -> [1024, 2, B*T].
    spec_fm = spec.reshape(b * t, N_BINS * 2).T.contiguous().view(N_BINS, 2, b * t)
    index, weight = tables.mel2l_index, tables.mel2l_weight
    mag2 = _gather_matmul(torch.exp(spec_fm[:, 0]), index, weight)
    mel_phase = torch.cumsum((spec_fm[:, 1] * math.pi).reshape(N_BINS, b, t), dim=-1)
    phase = _gather_matmul(mel_phase.reshape(N_BINS, b * t), index, weight)
    return mag2, phase


def _to_nhwc(logmag: Tensor, ifreq: Tensor, b: int, t: int) -> Tensor:
    """Stack two frequency-major ``[F, B * T]`` channels into ``[B, T, F, 2]``.

    The inverse of the input transform in :func:`_mel_to_linear`: one blocked 2-D transpose.
    """
    stacked = torch.stack([logmag, ifreq], dim=1)  # [F, 2, B * T]
    return stacked.view(-1, b * t).T.contiguous().view(b, t, -1, 2)


@torch.no_grad()
def melspecgrams_to_specgrams(spec: Tensor) -> Tensor:
    """Mel to linear spectrogram: ``SpecgramsHelper.melspecgrams_to_specgrams``.

    Args:
        spec: ``[B, 128, 1024, 2]`` float32/float64 denormalised mel spectrogram (log mel power,
            mel IF / pi).

    Returns:
        ``[B, 128, 1024, 2]`` linear spectrogram of STFT bins 1..1024: channel 0 =
        ``0.5 * log(mag2 + 1e-6)`` (log amplitude, natural log), channel 1 = IF / pi computed by
        Magenta's ``instantaneous_frequency`` along time from the linear phase.
    """
    _check(spec, (N_FRAMES, N_BINS, 2), "mel spectrogram")
    b, t = spec.shape[:2]
    mag2, phase = _mel_to_linear(spec, audio_tables(spec.device, spec.dtype))
    logmag = 0.5 * torch.log(mag2[1:] + _EPS)
    ifreq = _instantaneous_frequency(phase[1:].view(N_BINS, b, t)).view(N_BINS, b * t)
    return _to_nhwc(logmag, ifreq, b, t)


@torch.no_grad()
def melspecgrams_to_audio(spec: Tensor) -> Tensor:
    """Mel spectrogram to waveform: ``SpecgramsHelper.melspecgrams_to_waves``.

    Magenta goes mel -> (log amplitude, IF) -> stft -> ``tf.signal.inverse_stft``. The detour
    through log amplitude and IF is skipped because it is exact algebra:
    ``exp(0.5 * log(mag2 + 1e-6)) = sqrt(mag2 + 1e-6)``, and ``cumsum(IF * pi)`` of Magenta's IF
    is the linear phase plus multiples of 2 pi. Then ``stft = sqrt(mag2 + 1e-6) * exp(i phase)``
    with a zero DC bin, ``irfft`` (n 2048) of every frame, times ``hann / 1.5`` (the
    ``inverse_stft_window_fn`` window), overlap-added with hop 512, keeping samples
    ``3072 : 3072 + 64000``. Only the kept range is overlap-added (frames 0..2 lie wholly in
    the cropped front padding).

    Args:
        spec: ``[B, 128, 1024, 2]`` float32/float64 denormalised mel spectrogram (channel 0 log
            mel power, channel 1 mel IF / pi), on any device.

    Returns:
        ``[B, 64000]`` waveform at 16 kHz, same device and dtype, not normalised.
    """
    _check(spec, (N_FRAMES, N_BINS, 2), "mel spectrogram")
    b, t = spec.shape[:2]
    if b == 0:  # MKL's FFT rejects empty batches
        return spec.new_zeros((0, AUDIO_LENGTH))
    tables = audio_tables(spec.device, spec.dtype)
    mag2, phase = _mel_to_linear(spec, tables)
    mag = torch.sqrt(mag2.add_(_EPS))
    mag[0] = 0.0
    stft = torch.complex(mag * torch.cos(phase), mag * torch.sin(phase))
    stft = stft.T.contiguous()  # [B * T, 1025], one blocked transpose to frame-major
    frames = torch.fft.irfft(stft, n=N_FFT, dim=-1).view(b, t, _OVERLAPS, HOP)
    # Output chunk c (512 samples) sums quarter k of frame c - k over k = 0..3. Kept chunk j is
    # output chunk j + first (first = 3072 / 512 = 6), so it takes frame j + first - k.
    first = PAD_LEFT // HOP
    chunks = t - 1 + _OVERLAPS - first  # 125 chunks = 64000 samples
    out = frames.new_zeros((b, chunks, HOP))
    for k in range(_OVERLAPS):
        out[:, : t - first + k].addcmul_(frames[:, first - k :, k], tables.synthesis_window[k])
    return out.view(b, chunks * HOP)


def _stft(audio: Tensor, window: Tensor) -> Tensor:
    """``SpecgramsHelper.waves_to_stfts``: pad 3072 zeros in front, frame, window, rfft, drop DC.

    Args:
        audio: ``[B, 64000]`` waveform.
        window: ``[2048]`` periodic Hann.

    Returns:
        Complex ``[B, 128, 1024]`` STFT bins 1..1024 (``tf.signal.stft`` with pad_end False).
    """
    padded = torch.nn.functional.pad(audio, (PAD_LEFT, 0))
    frames = padded.unfold(-1, N_FFT, HOP)  # [B, 128, 2048]
    return torch.fft.rfft(frames * window, dim=-1)[..., 1:]


@torch.no_grad()
def audio_to_melspecgrams(audio: Tensor, phase_floor: float | None = PHASE_FLOOR) -> Tensor:
    """Waveform to mel spectrogram: ``SpecgramsHelper.waves_to_melspecgrams``.

    ``waves_to_stfts`` (see :func:`_stft`), then ``stfts_to_specgrams``: ``logmag =
    log(|stft| + 1e-6)``, ``IF = instantaneous_frequency(angle(stft))``; then
    ``specgrams_to_melspecgrams``: ``mag2 = exp(2 logmag)``, ``phase = cumsum(IF * pi, time)``,
    ``log mel power = log(mag2 @ L2MEL + 1e-6)``, ``mel IF = instantaneous_frequency(phase @
    L2MEL)``. Magenta's intermediate steps are kept literally (including the ``exp(2 log(.))``
    and ``cumsum(IF)`` round trips) so float rounding matches.

    One deliberate difference (unless ``phase_floor`` is None): bins whose STFT amplitude is at
    or below ``phase_floor`` get phase 0 and IF 0. Magenta takes the angle of whatever rounding
    noise such bins hold (``angle(-0.0)`` is pi, ``angle(+0.0)`` is 0), so its IF there, and in the
    all-padding first frames, differs between CPUs; with the floor the features are
    deterministic and silent regions have IF 0, not noise, in training targets. The log power
    channel is unchanged.

    Args:
        audio: ``[B, 64000]`` float32/float64 waveform at 16 kHz, on any device.
        phase_floor: amplitude floor for the phase (see above); None reproduces Magenta exactly.

    Returns:
        ``[B, 128, 1024, 2]`` mel spectrogram (channel 0 log mel power, channel 1 mel IF / pi),
        not normalised (apply :func:`normalize` to get the generator's range).
    """
    _check(audio, (AUDIO_LENGTH,), "audio")
    b = audio.shape[0]
    if b == 0:  # MKL's FFT rejects empty batches
        return audio.new_zeros((0, N_FRAMES, N_BINS, 2))
    tables = audio_tables(audio.device, audio.dtype)
    stft = _stft(audio, tables.window).permute(2, 0, 1).contiguous()  # [1024, B, T]
    amplitude = torch.abs(stft)
    logmag = torch.log(amplitude + _EPS)
    angle = torch.angle(stft)
    if phase_floor is None:
        ifreq = _instantaneous_frequency(angle)
    else:
        loud = amplitude > phase_floor
        ifreq = torch.where(loud, _instantaneous_frequency(torch.where(loud, angle, 0.0)), 0.0)
    mag2 = torch.exp(2.0 * logmag).view(N_BINS, b * N_FRAMES)
    phase = torch.cumsum(ifreq * math.pi, dim=-1).view(N_BINS, b * N_FRAMES)
    mel_mag2 = _gather_matmul(mag2, tables.l2mel_index, tables.l2mel_weight)
    mel_phase = _gather_matmul(phase, tables.l2mel_index, tables.l2mel_weight)
    logmel = torch.log(mel_mag2 + _EPS)
    mel_if = _instantaneous_frequency(mel_phase.view(N_BINS, b, N_FRAMES))
    return _to_nhwc(logmel, mel_if.view(N_BINS, b * N_FRAMES), b, N_FRAMES)


def _normalizer(hparams: Mapping[str, Any], like: Tensor) -> tuple[Tensor, Tensor]:
    """``SpecgramsPrespecifiedNormalizer`` constants ``(a, b)``, each ``[2]`` like ``like``."""
    try:
        a = [hparams["mag_normalizer_a"], hparams["p_normalizer_a"]]
        b = [hparams["mag_normalizer_b"], hparams["p_normalizer_b"]]
    except KeyError as exc:
        raise InputError(f"hparams lack the normalizer constant {exc.args[0]!r}") from None
    return (
        torch.tensor(a, dtype=like.dtype, device=like.device),
        torch.tensor(b, dtype=like.dtype, device=like.device),
    )


def denormalize(gen_out: Tensor, hparams: Mapping[str, Any]) -> Tensor:
    """Generator output to spectrogram: ``SpecgramsPrespecifiedNormalizer.denormalize_op``.

    Args:
        gen_out: ``[B, H, W, 2]`` generator output in [-1, 1] (NHWC).
        hparams: Magenta flags with ``mag_normalizer_a/b`` and ``p_normalizer_a/b``.

    Returns:
        ``[B, H, W, 2]``: ``(gen_out - b) / a`` per channel (log mel power, mel IF / pi).
    """
    a, b = _normalizer(hparams, gen_out)
    return (gen_out - b) / a


def normalize(spec: Tensor, hparams: Mapping[str, Any]) -> Tensor:
    """Spectrogram to generator range: ``SpecgramsPrespecifiedNormalizer.normalize_op``.

    Args:
        spec: ``[B, H, W, 2]`` spectrogram (log mel power, mel IF / pi), NHWC.
        hparams: Magenta flags with ``mag_normalizer_a/b`` and ``p_normalizer_a/b``.

    Returns:
        ``[B, H, W, 2]``: ``clip(a * spec + b, -1, 1)`` per channel.
    """
    a, b = _normalizer(hparams, spec)
    return torch.clamp(a * spec + b, -1.0, 1.0)
