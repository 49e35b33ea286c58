"""Magenta GANSynth's hyper-parameters and progressive schedule.

``MAGENTA_DEFAULTS`` are Magenta's flag defaults (what a checkpoint's ``experiment.json`` is read
over), ``MEL_PROG_HIRES`` the published config over them (Google's checkpoints, random benchmark
models, the trainer's ``published`` config). A progressive stage ``s`` uses
:func:`blocks_of_stage` generator blocks and :func:`compute_progress` gives the generator's blend
position from the number of images seen, exactly as Magenta computes it.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from ganspace.errors import CheckpointError

# Magenta's `set_flags` defaults (magenta/models/gansynth/lib/model.py, Magenta 2.x). They apply to
# keys missing from experiment.json and differ from the published mel_prog_hires config.
MAGENTA_DEFAULTS: dict[str, Any] = {
    "train_root_dir": "/tmp/gansynth/train",
    "train_data_path": "/tmp/gansynth/nsynth-train.tfrecord",
    # dataset
    "dataset_name": "nsynth_tfds",
    "data_type": "mel",
    "audio_length": 64000,
    "sample_rate": 16000,
    "data_normalizer": "specgrams_prespecified_normalizer",
    "normalizer_margin": 0.8,
    "normalizer_num_examples": 1000,
    "mag_normalizer_a": 0.0661371661726,
    "mag_normalizer_b": 0.113718730221,
    "p_normalizer_a": 0.8,
    "p_normalizer_b": 0.0,
    # losses
    "gradient_penalty_target": 1.0,
    "gradient_penalty_weight": 10.0,
    "real_score_penalty_weight": 0.001,
    "generator_ac_loss_weight": 1.0,
    "discriminator_ac_loss_weight": 1.0,
    "gen_gl_consistency_loss_weight": 0.0,
    # optimization
    "generator_learning_rate": 0.0004,
    "discriminator_learning_rate": 0.0004,
    "adam_beta1": 0.0,
    "adam_beta2": 0.99,
    "fake_batch_size": 16,
    # distributed training, debugging
    "master": "",
    "ps_tasks": 0,
    "task": 0,
    "debug_hook": False,
    # progressive training (images seen; train_time_limit in seconds)
    "batch_size_schedule": [16, 8],
    "stable_stage_num_images": 32,
    "transition_stage_num_images": 32,
    "total_num_images": 320,
    "save_summaries_num_images": 100,
    "train_progressive": True,
    "train_time_limit": None,
    "train_time_stage_multiplier": 1.0,
    # architecture
    "g_fn": "specgram",
    "d_fn": "specgram",
    "latent_vector_size": 256,
    "kernel_size": 3,
    "start_height": 4,
    "start_width": 8,
    "scale_mode": "ALL",
    "scale_base": 2,
    "num_resolutions": 7,
    "simple_arch": False,
    "to_rgb_activation": "tanh",
    "fmap_base": 512,
    "fmap_decay": 1.0,
    "fmap_max": 128,
}

# Magenta's published config (configs/mel_prog_hires.py) over the defaults: what Google's
# all_instruments / acoustic_only checkpoints and the course's `--config=mel_prog_hires` use.
MEL_PROG_HIRES: dict[str, Any] = {
    "data_type": "mel",
    "total_num_images": 11_000_000,
    "discriminator_learning_rate": 8e-4,
    "generator_learning_rate": 8e-4,
    "train_progressive": True,
    "stable_stage_num_images": 800_000,
    "transition_stage_num_images": 800_000,
    "save_summaries_num_images": 10_000,
    "batch_size_schedule": [8],
    "fmap_base": 4096,
    "fmap_decay": 1.0,
    "fmap_max": 256,
    "fake_batch_size": 61,
    "latent_vector_size": 256,
    "kernel_size": 3,
    "gradient_penalty_target": 1.0,
    "gradient_penalty_weight": 10.0,
    "real_score_penalty_weight": 0.001,
    "generator_ac_loss_weight": 10.0,
    "discriminator_ac_loss_weight": 10.0,
    "gen_gl_consistency_loss_weight": 0.0,
    "dataset_name": "nsynth_tfds",
    "g_fn": "specgram",
    "d_fn": "specgram",
    "scale_mode": "ALL",
    "scale_base": 2,
    "num_resolutions": 7,
    "start_height": 2,
    "start_width": 16,
}


def published_hparams() -> dict[str, Any]:
    """Full hparams of the published ``mel_prog_hires`` config (a fresh dict)."""
    return {**copy.deepcopy(MAGENTA_DEFAULTS), **copy.deepcopy(MEL_PROG_HIRES)}


NSYNTH_PITCHES: list[int] = list(range(24, 85))  # MIDI 24..84: 61 one-hot classes


def blocks_of_stage(stage: int) -> int:
    """Generator blocks of a progressive stage: ``(stage + 1) // 2 + 1`` (stage 12 -> 7)."""
    return (stage + 1) // 2 + 1


def compute_progress(
    global_step: int,
    hparams: dict[str, Any],
    num_blocks: int,
    train_time: float | None = None,
) -> float:
    """Return Magenta's training progress (float32 arithmetic, as its graph computes it).

    ``global_step`` counts images seen; ``train_time`` is the float ``Variable`` of the checkpoint
    (seconds), needed only when ``train_time_limit`` is set. Without progressive training the
    progress is ``num_blocks - 1``.
    """
    if not hparams["train_progressive"]:
        return float(num_blocks - 1)
    if hparams["train_time_limit"] is not None:
        if train_time is None:
            raise CheckpointError("train_time_limit is set but the train time is unknown")
        return _progress_from_time(train_time, hparams, num_blocks)
    stable = int(hparams["stable_stage_num_images"])
    trans = int(hparams["transition_stage_num_images"])
    capped = min(int(global_step), num_blocks * stable + (num_blocks - 1) * trans - 1)
    whole, rest = divmod(capped, stable + trans)
    fraction = max(np.float32(0.0), np.float32(rest - stable) / np.float32(trans))
    return float(np.float32(whole) + fraction)


def _progress_from_time(train_time: float, hparams: dict[str, Any], num_blocks: int) -> float:
    """Magenta's ``compute_progress_from_time`` with its stage-time schedule (``model.py``):
    stage ``i`` lasts ``multiplier**i`` units scaled to sum to ``train_time_limit``; each odd
    (transition) stage contributes its clipped completed fraction."""
    num_stages = 2 * int(hparams["num_resolutions"]) - 1
    times = np.zeros(num_stages, dtype=np.float32)
    times[0] = 1.0
    for i in range(1, num_stages):
        times[i] = float(times[i - 1]) * float(hparams["train_time_stage_multiplier"])
    times *= np.float32(float(hparams["train_time_limit"]) / float(np.sum(times)))
    times = np.cumsum(times)
    t = np.float32(train_time)
    progress = np.float32(0.0)
    for i in range(1, num_stages, 2):
        stage = (t - times[i - 1]) / (times[i] - times[i - 1])
        progress += np.clip(stage, np.float32(0.0), np.float32(1.0))
    return float(min(progress, np.float32(num_blocks - 1)))
