"""The progressive schedule, by images seen, and the images each stage trains on.

- **Configs.** :data:`CONFIGS` names overrides of Magenta's published ``mel_prog_hires`` hparams
  (``ganspacesynth train --config``).
- **Stages.** Stage ``s`` (0 .. 2 * (num_resolutions - 1)) alternates stable and transition
  phases of ``stable_stage_num_images`` / ``transition_stage_num_images`` images; stage ``s``
  uses ``(s + 1) // 2 + 1`` blocks and ``progress = ganspace.engine.hparams.compute_progress(
  images_seen, hparams, num_blocks)``, exactly Magenta's value, so an exported model's progress
  and the generator's alpha blend agree with ``global_step``.
- **Stage resolution.** Magenta feeds full-resolution images everywhere: real data blurred by
  ``blend_images`` (box downscale + nearest upscale per block, weighted by the generator's
  alphas), generator output nearest-upscaled, and a discriminator that only looks at
  average-pooled copies. Here both are average-pooled to the highest resolution in use
  (:func:`blend_images`, :func:`generate_at_stage`), which gives the same scores with far less
  work at low stages.
- **EMA.** The generator's exponential moving average decays with :func:`ema_decay`.
"""

from __future__ import annotations

import copy
import math
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ganspace.engine.generator import Generator, GeneratorConfig
from ganspace.engine.hparams import blocks_of_stage, compute_progress, published_hparams
from ganspace.errors import InputError

#: Magenta's generator EMA decay; see :func:`ema_decay` for the warm-up of new blocks.
EMA_DECAY = 0.999
RECON_HPARAMS: dict[str, Any] = {
    "objective": "recon",
    "train_progressive": False,
    "adam_beta1": 0.9,
    "adam_beta2": 0.99,
    "generator_learning_rate": 1e-3,
    "recon_crop_frames": 8,
    "recon_crop_from_block": 5,
    "recon_deep_supervision": 0.5,
    "recon_mag_weight": 1.0,
    "recon_mag_grad_weight": 1.0,
    "recon_if_weight": 1.0,
    "recon_peak_weight": 10.0,
}
"""The reconstruction objective's settings, shared by the ``default`` and ``tiny-recon`` configs."""

#: Named configs: overrides of Magenta's published ``mel_prog_hires`` hparams.
CONFIGS: dict[str, dict[str, Any]] = {
    # Magenta's published recipe: 7.3 M-parameter generator, 11 M images (days on a V100).
    "published": {},
    # The default instrument on a CPU: channels 64,64,64,32,16,8,4, latent 64; long stable
    # stages (500 steps each) so the pitch conditioning is learnt at the cheap low resolutions;
    # the final stage starts after 31,200 images (~50 min on one shared core).
    "small": {
        "latent_vector_size": 64,
        "fmap_base": 512,
        "fmap_max": 64,
        "stable_stage_num_images": 4000,
        "transition_stage_num_images": 1200,
        "total_num_images": 60_000,
        "batch_size_schedule": [8],
        "save_summaries_num_images": 1000,
    },
    # The default instrument (models/default): regression onto the synthetic teacher
    # (ganspace.train.synthdata, latent = its 12 voice parameters), all blocks at once with deep
    # supervision, the high blocks on 8-frame time crops. Channels 128,128,128,90,64,45,32
    # (1.4 M parameters): the last two blocks are wider than "small" (8, 4), since that is where
    # the harmonic combs are drawn. Runs until stopped; resume with --resume.
    "default": {
        "latent_vector_size": 12,
        "fmap_base": 363,
        "fmap_decay": 0.5,
        "fmap_max": 128,
        "total_num_images": 100_000_000,
        "batch_size_schedule": [8],
        **RECON_HPARAMS,
    },
    # Tests of the reconstruction objective: "tiny" regressed onto a teacher's 12-d latents.
    "tiny-recon": {
        "latent_vector_size": 12,
        "fmap_base": 1024,
        "fmap_max": 4,
        "total_num_images": 64,
        "batch_size_schedule": [4],
        **RECON_HPARAMS,
    },
    # Tests: 4 channels everywhere, 16 images per stage.
    "tiny": {
        "latent_vector_size": 8,
        "fmap_base": 1024,
        "fmap_max": 4,
        "stable_stage_num_images": 16,
        "transition_stage_num_images": 16,
        "total_num_images": 256,
        "batch_size_schedule": [4],
        "save_summaries_num_images": 16,
    },
}


def config_hparams(name: str) -> dict[str, Any]:
    """Full hparams of a named config (published defaults + overrides; a fresh dict)."""
    if name not in CONFIGS:
        raise InputError(f"unknown config {name!r}; choose from {', '.join(CONFIGS)}")
    return {**published_hparams(), **copy.deepcopy(CONFIGS[name])}


def stage_of(images: int, hparams: dict[str, Any]) -> int:
    """Magenta stage id (0 .. 2 * (num_resolutions - 1)) while ``images`` images have been seen
    (always the last stage when ``train_progressive`` is false)."""
    if not hparams["train_progressive"]:
        return 2 * (int(hparams["num_resolutions"]) - 1)
    stable = int(hparams["stable_stage_num_images"])
    trans = int(hparams["transition_stage_num_images"])
    whole, rest = divmod(int(images), stable + trans)
    return min(2 * whole + int(rest >= stable), 2 * (int(hparams["num_resolutions"]) - 1))


def batch_size_of(stage: int, hparams: dict[str, Any]) -> int:
    """Global batch size of a stage: ``batch_size_schedule[num_blocks - 1]`` (clamped)."""
    schedule = list(hparams["batch_size_schedule"])
    return int(schedule[min(blocks_of_stage(stage) - 1, len(schedule) - 1)])


def progress_of(images: int, hparams: dict[str, Any]) -> float:
    """Training progress after ``images`` images (Magenta's ``compute_progress``)."""
    return compute_progress(images, hparams, blocks_of_stage(stage_of(images, hparams)))


def top_block(progress: float, num_blocks: int) -> int:
    """Highest block whose output is blended at ``progress``: ``ceil(progress) + 1``."""
    return min(num_blocks, math.ceil(progress) + 1)


def blend_images(x: Tensor, progress: float, cfg: GeneratorConfig) -> Tensor:
    """Magenta's ``blend_images`` (the real images a stage trains on), at the resolution of
    :func:`top_block` instead of full resolution.

    Args:
        x: [B, 2, 128, 1024] normalised mel-IF images (NCHW, full resolution).
        progress: training progress.
        cfg: the architecture (resolutions, generator alphas).
    Returns:
        [B, 2, H_top, W_top]: sum over blocks k of alpha_k(progress) * (x box-downscaled to block
        k and nearest-upscaled to block ``top``), average-pooled to block ``top``.
    """
    cfg_p = replace(cfg, progress=progress)
    top = top_block(progress, cfg.num_resolutions)
    x = F.avg_pool2d(x, 2 ** (cfg.num_resolutions - top)) if top < cfg.num_resolutions else x
    out = torch.zeros_like(x)
    for k, alpha in enumerate(cfg_p.alphas()[:top], 1):
        if alpha > 0.0:
            f = 2 ** (top - k)
            lod = x if f == 1 else F.interpolate(F.avg_pool2d(x, f), scale_factor=f,
                                                 mode="nearest")
            out += alpha * lod
    return out


def generate_at_stage(gen: Generator, z: Tensor, labels: Tensor, progress: float) -> Tensor:
    """Generator output at the resolution of :func:`top_block` (NCHW [B, 2, H_top, W_top]):
    Magenta's full-resolution blend, average-pooled (exact, since it is nearest-upscaled)."""
    gen.cfg = replace(gen.cfg, progress=progress)
    out = gen(z, labels)
    top = top_block(progress, gen.cfg.num_resolutions)
    f = 2 ** (gen.cfg.num_resolutions - top)
    return F.avg_pool2d(out, f) if f > 1 else out


def ema_decay(updates: int) -> float:
    """EMA decay after a block's ``updates``-th generator step in use: ``min(0.999, (1 + n) /
    (10 + n))``, TensorFlow's ``ExponentialMovingAverage(num_updates=n)`` rule.

    Magenta uses a constant 0.999, which is the same once a block has been trained for about
    9000 steps (every block of a published run). In a short run the constant decay would keep a
    large share of a new block's random initialisation in the shadow weights (0.999**1000 = 37 %
    after 1000 steps), so the counter starts when the block enters the blend.
    """
    return min(EMA_DECAY, (1.0 + updates) / (10.0 + updates))
