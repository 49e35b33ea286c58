"""Magenta GANSynth checkpoint folders: stage, prefix, hyperparameters, pitches, progress, weights.

A folder holds ``experiment.json`` (the training flags), an optional ``meta.json`` (custom
datasets: the pitch set) and one ``stage_NNNNN`` folder per progressive stage with a TF V2 bundle.
Only the newest stage is used, and of it only the generator's exponential-moving-average weights.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganspace.errors import CheckpointError
from ganspace.formats.tfcheckpoint import BundleReader

log = logging.getLogger(__name__)

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
_GEN_SCOPE = "Generator/progressive_gan_generator/progressive_gan_block_{k}/{layer}/{param}"
_EMA = "/ExponentialMovingAverage"


@dataclass(frozen=True)
class MagentaCheckpoint:
    """A resolved Magenta GANSynth checkpoint.

    ``prefix`` is the bundle prefix (``.../stage_00012/model.ckpt-11000000``); ``global_step`` is
    the number of training images seen; ``progress`` in ``[0, num_blocks - 1]`` selects the
    generator's output blend.
    """

    folder: Path
    stage_dir: Path
    prefix: Path
    stage_id: int
    num_blocks: int
    hparams: dict[str, Any]
    pitches: list[int]
    global_step: int
    progress: float


def load_hparams(folder: str | Path) -> dict[str, Any]:
    """Return ``experiment.json`` of ``folder`` over :data:`MAGENTA_DEFAULTS` (json keys win)."""
    path = Path(folder) / "experiment.json"
    try:
        experiment = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing: not a Magenta GANSynth folder") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(experiment, dict):
        raise CheckpointError(f"{path} must hold a JSON object of flags")
    return {**copy.deepcopy(MAGENTA_DEFAULTS), **experiment}


def load_pitches(folder: str | Path) -> list[int]:
    """Return the sorted distinct MIDI pitches of ``meta.json`` (``{name: {"pitch": P}}``), or
    the NSynth range 24..84 when there is no ``meta.json``."""
    path = Path(folder) / "meta.json"
    if not path.exists():
        return list(NSYNTH_PITCHES)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        pitches = sorted({int(item["pitch"]) for item in meta.values()})
    except (ValueError, UnicodeDecodeError, AttributeError, KeyError, TypeError) as exc:
        raise CheckpointError(f'{path}: expected {{name: {{"pitch": P}}}}: {exc!r}') from None
    if not pitches:
        raise CheckpointError(f"{path} lists no pitches")
    return pitches


def _resolve_prefix(stage_dir: Path) -> Path:
    """Return the bundle prefix named by the ``checkpoint`` state file (by basename, since it may
    hold a path from another machine), else the highest-step ``*.index`` in ``stage_dir``."""
    state = stage_dir / "checkpoint"
    if state.exists():
        match = re.search(r'^model_checkpoint_path:\s*"(.*)"', state.read_text(), re.MULTILINE)
        if match:
            name = re.split(r"[\\/]+", match.group(1).rstrip("\\/"))[-1]
            if (stage_dir / f"{name}.index").exists():
                return stage_dir / name
            log.warning("%s names %s, which is not there; using the newest index", state, name)

    def step(index: Path) -> int:
        found = re.search(r"-(\d+)$", index.stem)
        return int(found.group(1)) if found else -1

    indexes = sorted(stage_dir.glob("*.index"), key=lambda p: (step(p), p.name))
    if not indexes:
        raise CheckpointError(f"no checkpoint (*.index) in {stage_dir}")
    return indexes[-1].with_suffix("")


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


def find_checkpoint(folder: str | Path) -> MagentaCheckpoint:
    """Resolve the newest stage of a Magenta GANSynth folder and read its step and progress."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder} is not a folder")
    hparams = load_hparams(folder)
    stages = sorted(p for p in folder.glob("stage_*") if p.is_dir())
    if not stages:
        raise CheckpointError(f"no stage_* folder in {folder}")
    stage_dir = stages[-1]
    try:
        stage_id = int(stage_dir.name.split("_")[-1])
    except ValueError:
        raise CheckpointError(f"cannot read the stage number of {stage_dir}") from None
    num_blocks = blocks_of_stage(stage_id)
    prefix = _resolve_prefix(stage_dir)
    reader = BundleReader(prefix)
    global_step = int(reader.read("global_step"))
    train_time = None
    if hparams["train_progressive"] and hparams["train_time_limit"] is not None:
        train_time = float(reader.read("Variable"))  # Magenta's unnamed train-time variable
    return MagentaCheckpoint(
        folder=folder,
        stage_dir=stage_dir,
        prefix=prefix,
        stage_id=stage_id,
        num_blocks=num_blocks,
        hparams=hparams,
        pitches=load_pitches(folder),
        global_step=global_step,
        progress=compute_progress(global_step, hparams, num_blocks, train_time),
    )


def generator_state_dict(ckpt: MagentaCheckpoint) -> dict[str, torch.Tensor]:
    """Read the generator's EMA weights of blocks ``1..num_blocks`` as a PyTorch state dict.

    Keys: ``blocks.{k-1}.conv0/conv1.weight/bias`` and ``to_rgb.{k-1}.weight/bias``. Kernels go from
    TF ``[kh, kw, cin, cout]`` to ``[cout, cin, kh, kw]`` (unscaled, contiguous float32); biases are
    ``[cout]``. The global step is ``ckpt.global_step``.
    """
    reader = BundleReader(ckpt.prefix)
    names: dict[str, str] = {}
    for k in range(1, ckpt.num_blocks + 1):
        for layer in ("conv0", "conv1", "to_rgb"):
            target = f"to_rgb.{k - 1}" if layer == "to_rgb" else f"blocks.{k - 1}.{layer}"
            for param, torch_name in (("conv2d/kernel", "weight"), ("bias", "bias")):
                tf_name = _GEN_SCOPE.format(k=k, layer=layer, param=param) + _EMA
                names[f"{target}.{torch_name}"] = tf_name
    missing = sorted(set(names.values()) - set(reader.keys()))
    if missing:
        raise CheckpointError(
            f"checkpoint {ckpt.prefix} lacks generator EMA tensors: {', '.join(missing)}"
        )
    state: dict[str, torch.Tensor] = {}
    for torch_name, tf_name in names.items():
        tensor = torch.from_numpy(reader.read(tf_name)).to(torch.float32)
        if tensor.dim() == 4:
            tensor = tensor.permute(3, 2, 0, 1)
        state[torch_name] = tensor.contiguous()
    return state
