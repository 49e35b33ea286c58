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

import torch

from ganspace.engine.generator import Generator, GeneratorConfig
from ganspace.engine.hparams import (
    MAGENTA_DEFAULTS,
    NSYNTH_PITCHES,
    blocks_of_stage,
    compute_progress,
)
from ganspace.engine.model import GANSynthModel
from ganspace.errors import CheckpointError
from ganspace.formats.tfcheckpoint import BundleReader

log = logging.getLogger(__name__)

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


def detect(path: Path) -> bool:
    """Whether the folder ``path`` looks like a Magenta checkpoint (``experiment.json`` or a
    ``stage_*`` folder)."""
    return (path / "experiment.json").is_file() or any(path.glob("stage_*"))


def load(path: Path, device: torch.device | str | None, precision: str) -> GANSynthModel:
    """The newest stage's generator EMA weights of the Magenta folder ``path`` as a model."""
    ckpt = find_checkpoint(path)
    state = generator_state_dict(ckpt)
    cfg = GeneratorConfig.from_hparams(ckpt.hparams, len(ckpt.pitches), ckpt.num_blocks,
                                       ckpt.progress)
    gen = Generator.from_state_dict(cfg, state, ckpt.prefix)
    provenance = {
        "source": str(path.resolve()),
        "source_format": "magenta",
        "checkpoint": ckpt.prefix.name,
        "stage": ckpt.stage_id,
        "global_step": ckpt.global_step,
        "progress": ckpt.progress,
    }
    return GANSynthModel(gen, ckpt.hparams, ckpt.pitches, provenance, device, precision)
