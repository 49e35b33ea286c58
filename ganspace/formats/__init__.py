"""File formats: the native model folder, Magenta checkpoint folders (and the TF bundle reader
under them), legacy GANSpaceSynth PCA pickles.

:func:`load_model` reads any model folder through :data:`MODEL_FORMATS`, one entry per model
format: the first format whose ``detect`` accepts the folder loads it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ganspace.engine.model import GANSynthModel
from ganspace.errors import CheckpointError
from ganspace.formats import magenta, native


@dataclass(frozen=True)
class ModelFormat:
    """One model format :func:`load_model` reads.

    Attributes:
        name: short name (``native``, ``magenta``).
        expects: what a folder of this format holds, for the "not a model folder" message.
        detect: ``detect(folder) -> bool``, cheap (looks at file names only).
        load: ``load(folder, device, precision) -> GANSynthModel``; raises CheckpointError or
            ModelFormatError naming the missing or broken file.
    """

    name: str
    expects: str
    detect: Callable[[Path], bool]
    load: Callable[[Path, torch.device | str | None, str], GANSynthModel]


MODEL_FORMATS: tuple[ModelFormat, ...] = (
    ModelFormat("native", f"{native.MODEL_JSON} for a native model", native.detect, native.load),
    ModelFormat("magenta", "experiment.json and stage_* folders for a Magenta checkpoint",
                magenta.detect, magenta.load),
)
"""Tried in order; the first whose ``detect`` accepts the folder loads it."""


REPO_MODELS = Path(__file__).resolve().parents[2] / "models"
"""A checkout's ``models/`` folder (editable installs, running from the repository)."""
INSTALLED_MODELS = Path(sys.prefix) / "share" / "ganspacesynth" / "models"
"""Where ``pip install .`` copies ``models/default`` (setup.cfg data_files)."""


def default_model_dir(repo: Path = REPO_MODELS, installed: Path = INSTALLED_MODELS) -> Path:
    """The shipped default model: ``repo/default`` when it holds a model, else
    ``installed/default`` (which may not exist either: check before loading)."""
    candidates = [repo / "default", installed / "default"]
    return next((c for c in candidates if (c / "model.json").is_file()), candidates[0])


def load_model(
    path: str | Path, device: torch.device | str | None = None, precision: str = "float32"
) -> GANSynthModel:
    """Load a model folder of any format in :data:`MODEL_FORMATS`.

    Args:
        path: folder with ``model.json`` (native) or ``experiment.json`` + ``stage_*`` (Magenta).
        device: "cpu", "cuda", a torch.device, or None for CUDA when available.
        precision: "float32" (default); on CUDA also "bfloat16" or "float16" for the generator
            (the audio stage always runs in float32).
    Raises:
        CheckpointError / ModelFormatError naming the missing or broken file.
    """
    p = Path(path)
    if not p.is_dir():
        raise CheckpointError(f"{p}: no such model folder")
    for fmt in MODEL_FORMATS:
        if fmt.detect(p):
            return fmt.load(p, device, precision)
    expected = ", or ".join(fmt.expects for fmt in MODEL_FORMATS)
    raise CheckpointError(f"{p}: not a model folder (expected {expected})")
