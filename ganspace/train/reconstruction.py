"""The reconstruction objective: regress the generator onto a teacher synthesizer.

For a synthetic dataset every note was rendered from a known latent (``latents.npy``,
:mod:`ganspace.train.synthdata`), so ``G(z_i, pitch_i)`` can be trained to reproduce note i's
normalised mel-IF image directly, a supervised problem that converges far faster than the
adversarial game on a CPU. Three ideas make it cheap and sharp:

- **Time crops.** A note's spectrogram is nearly stationary along time, so the high-resolution
  blocks (``crop_from`` and later) are computed only for the rows that ``frames`` output frames
  depend on (:func:`crop_forward`: a 3x3 conv needs one row of context, a nearest x2 upsample
  halves the row index), with the image borders zero-padded exactly as the full forward pass
  does. The result is bit-for-bit the matching rows of the full output, at a fraction of the
  cost of the wide last blocks.
- **Deep supervision.** Every block's ``to_rgb`` head is trained towards the target box-pooled
  to that block's resolution (weight ``deep * 0.5 ** (num_blocks - 1 - k)`` for block k < last),
  so the coarse harmonic layout is learnt by the cheap low blocks and each later block only
  refines it; the exported model blends the last block alone (progress = num_blocks - 1).
- **Losses that reward sharp, well-placed harmonics** (:func:`reconstruction_loss`): L1 on the
  normalised log magnitude, each bin weighted ``1 + peak * level`` (level: 1 at the note's
  peak, 0 at 60 dB below it), and on its difference along frequency (the slopes of the harmonic
  peaks); L1 on the instantaneous frequency weighted by the level. (Not a wrap-aware phase
  distance: the generator's tanh output reaches only +-1.25 in IF / pi, so a target reachable
  "through the wrap" pushes the output into saturation, where its gradient vanishes; observed.)
  Without the peak weight the harmonic peaks, a minority of
  the bins, lose to the silent bins between them: L1's optimum for a network that cannot yet
  place them is the silence floor everywhere, which is where plain L1 runs got stuck.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ganspace.engine.generator import Generator

#: The IF term only counts bins within this many nats of log power below the note's peak (60 dB).
IF_RANGE_NATS = 13.8


@dataclass(frozen=True)
class BlockOutput:
    """Rows ``row0 .. row0 + rgb.shape[2] - 1`` of block k's ``tanh(to_rgb)`` ([B, 2, h, W_k])."""

    rgb: Tensor
    row0: int


def _zero_outside(x: Tensor, row0: int, height: int) -> Tensor:
    """Zero the rows of ``x`` [B, C, h, W] (absolute rows ``row0 ..``) that lie outside
    ``0 .. height - 1`` (what SAME padding feeds a convolution there)."""
    rows = torch.arange(row0, row0 + x.shape[2], device=x.device)
    keep = ((rows >= 0) & (rows < height)).to(x.dtype)
    return x * keep.view(1, 1, -1, 1)


def crop_forward(gen: Generator, z: Tensor, labels: Tensor, rows: tuple[int, int],
                 crop_from: int, last: int | None = None) -> dict[int, BlockOutput]:
    """The ``tanh(to_rgb)`` output of every block up to ``last``, the high blocks only where
    needed.

    Args:
        gen: the generator.
        z: [B, latent_size] latents; labels: [B] pitch classes.
        rows: ``(t0, t1)``, the frames of block ``last``'s output wanted (0 <= t0 < t1 <= H).
        crop_from: first block computed on a crop (blocks before it are computed whole);
            ``crop_from > last`` computes everything whole.
        last: the highest block run (default: ``cfg.num_blocks``).
    Returns:
        ``{k: BlockOutput}`` for k = 1 .. last; for a cropped block the rows cover at least
        what the wanted output rows depend on (and may extend past the image: compare only rows
        inside ``0 .. H_k - 1``); whole blocks have ``row0 = 0``.
    """
    cfg = gen.cfg
    last = cfg.num_blocks if last is None else last
    need: dict[int, tuple[int, int]] = {}
    lo, hi = rows
    for k in range(last, crop_from - 1, -1):
        need[k] = (lo, hi)
        # conv1 and conv0 each need one more row on both sides, then undo the x2 upsample.
        lo, hi = (lo - 2) // 2, -((-(hi + 2)) // 2)
    x = gen.input_vector(z, labels)
    out: dict[int, BlockOutput] = {}
    for k in range(1, min(crop_from, last + 1)):
        x = gen.block_conv(k, 1, gen.block_conv(k, 0, x))
        out[k] = BlockOutput(gen.rgb_output(k, x), 0)
    if crop_from > last:
        return out
    height = cfg.resolution(crop_from - 1)[0]
    x = F.pad(x[:, :, max(lo, 0):min(hi, height)], (0, 0, max(0, -lo), max(0, hi - height)))
    row0 = lo
    for k in range(crop_from, last + 1):
        height = cfg.resolution(k)[0]
        want_lo, want_hi = need[k]
        x = F.interpolate(x, scale_factor=cfg.scale_base, mode="nearest")
        row0 *= cfg.scale_base
        x = x[:, :, want_lo - 2 - row0 : want_hi + 2 - row0]
        row0 = want_lo - 2
        for conv in (0, 1):
            x = gen.block_conv_valid_rows(k, conv, _zero_outside(x, row0, height))
            row0 += 1
        out[k] = BlockOutput(gen.rgb_output(k, x), row0)
    return out


def level_weight(target_logmag: Tensor) -> Tensor:
    """Weight of each bin for the IF term: ``clip(1 + (L - max L) / 13.8, 0, 1)`` per note.

    Args:
        target_logmag: [B, H, W] log mel power (nats, denormalised).
    Returns:
        [B, H, W] in [0, 1].
    """
    peak = target_logmag.amax(dim=(1, 2), keepdim=True)
    return (1.0 + (target_logmag - peak) / IF_RANGE_NATS).clamp(0.0, 1.0)


def reconstruction_loss(pred: Tensor, target: Tensor, hparams: dict[str, Any],
                        weights: dict[str, float]) -> tuple[Tensor, dict[str, Tensor]]:
    """Loss of generated normalised images against the teacher's.

    Args:
        pred: [B, 2, h, w] generator output (normalised, tanh range).
        target: [B, 2, h, w] the teacher's normalised image (same rows and resolution).
        hparams: the normaliser constants (``mag_normalizer_a/b``, ``p_normalizer_a``).
        weights: ``mag``, ``mag_grad`` and ``if`` weights of the three terms, and ``peak``, the
            extra weight of the magnitude at the note's loudest bins.
    Returns:
        (weighted sum, {"mag", "mag_grad", "if"}): scalar tensors.
    """
    pm, tm = pred[:, 0].float(), target[:, 0].float()
    a_mag, b_mag = float(hparams["mag_normalizer_a"]), float(hparams["mag_normalizer_b"])
    weight = level_weight((tm - b_mag) / a_mag)
    mag_weight = 1.0 + weights["peak"] * weight
    mag = (mag_weight * (pm - tm).abs()).sum() / mag_weight.sum()
    mag_grad = (torch.diff(pm, dim=-1) - torch.diff(tm, dim=-1)).abs().mean()
    step = (pred[:, 1].float() - target[:, 1].float()).abs()
    phase = (weight * step).sum() / weight.sum().clamp_min(1.0)
    parts = {"mag": mag, "mag_grad": mag_grad, "if": phase}
    total = sum((weights[name] * value for name, value in parts.items()),
                torch.zeros((), device=pred.device))
    return total, parts


def pool_to(x: Tensor, height: int) -> Tensor:
    """Box-pool an image [B, C, H, W] by ``H / height`` (a power of two) in both axes."""
    f = x.shape[2] // height
    return F.avg_pool2d(x, f) if f > 1 else x


def deep_weight(block: int, num_blocks: int, deep: float) -> float:
    """Loss weight of block ``block``'s head: 1 for the last block, ``deep * 0.5 ** (num_blocks -
    1 - block)`` below it."""
    return 1.0 if block == num_blocks else deep * 0.5 ** (num_blocks - 1 - block)


def supervised_loss(outputs: dict[int, BlockOutput], target: Tensor, hparams: dict[str, Any],
                    weights: dict[str, float], deep: float) -> tuple[Tensor, dict[str, Tensor]]:
    """Sum over blocks of :func:`reconstruction_loss` against the pooled target.

    Args:
        outputs: :func:`crop_forward`'s result (its highest block has the target's resolution
            along frequency).
        target: [B, 2, H, W] normalised teacher images at the highest block's resolution.
        hparams, weights: as :func:`reconstruction_loss`.
        deep: weight of the lower blocks (:func:`deep_weight`).
    Returns:
        (total, the last block's terms).
    """
    num_blocks = max(outputs)
    total = torch.zeros((), device=target.device)
    last: dict[str, Tensor] = {}
    for k, out in outputs.items():
        w = deep_weight(k, num_blocks, deep)
        if w == 0.0:
            continue
        pooled = pool_to(target, target.shape[2] >> (num_blocks - k))
        lo, hi = max(out.row0, 0), min(out.row0 + out.rgb.shape[2], pooled.shape[2])
        loss, parts = reconstruction_loss(out.rgb[:, :, lo - out.row0 : hi - out.row0],
                                          pooled[:, :, lo:hi], hparams, weights)
        total = total + w * loss
        if k == num_blocks:
            last = parts
    return total, last
