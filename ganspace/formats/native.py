"""The native model format: a folder with ``model.json`` and ``generator.safetensors``.

``model.json``: format name and version, Magenta-style hparams, pitches, sample rate, audio
length, num_blocks, progress, provenance. ``generator.safetensors``: the
:class:`~ganspace.engine.generator.Generator` state dict, kernels unscaled
``[cout, cin, kh, kw]`` (as Magenta stores them).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ganspace.engine.generator import Generator, GeneratorConfig
from ganspace.engine.model import GANSynthModel
from ganspace.errors import ModelFormatError

FORMAT_NAME = "ganspacesynth-model"
FORMAT_VERSION = 1
MODEL_JSON = "model.json"
WEIGHTS_FILE = "generator.safetensors"


def save(model: GANSynthModel, out_dir: str | Path) -> Path:
    """Write ``model`` into ``out_dir`` (created; existing files replaced); returns the folder."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "hparams": model.hparams,
        "pitches": model.pitches,
        "sample_rate": model.sample_rate,
        "audio_length": model.audio_length,
        "num_blocks": cfg.num_blocks,
        "progress": cfg.progress,
        "provenance": model.provenance,
    }
    state = {k: v.detach().to("cpu").contiguous() for k, v in
             model.generator.state_dict().items()}
    save_file(state, str(out / WEIGHTS_FILE), metadata={"format": FORMAT_NAME})
    (out / MODEL_JSON).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return out


def detect(path: Path) -> bool:
    """Whether the folder ``path`` holds a native model (it has ``model.json``)."""
    return (path / MODEL_JSON).is_file()


def load(path: Path, device: torch.device | str | None, precision: str) -> GANSynthModel:
    """Read the native model in folder ``path`` (ModelFormatError naming the broken file)."""
    try:
        meta = json.loads((path / MODEL_JSON).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelFormatError(f"{path / MODEL_JSON}: unreadable ({exc})") from None
    if meta.get("format") != FORMAT_NAME:
        raise ModelFormatError(f"{path / MODEL_JSON}: not a {FORMAT_NAME} file")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelFormatError(
            f"{path / MODEL_JSON}: format version {version} is not supported by this ganspacesynth "
            f"(it reads version {FORMAT_VERSION}); upgrade ganspacesynth or re-import the model"
        )
    try:
        state = load_file(str(path / WEIGHTS_FILE))
    except (OSError, SafetensorError) as exc:
        raise ModelFormatError(f"{path / WEIGHTS_FILE}: unreadable ({exc})") from None
    cfg = GeneratorConfig.from_hparams(
        meta["hparams"], len(meta["pitches"]), int(meta["num_blocks"]), float(meta["progress"])
    )
    gen = Generator.from_state_dict(cfg, state, path)
    return GANSynthModel(gen, meta["hparams"], meta["pitches"], meta.get("provenance"), device,
                         precision)
