"""Export a model for hosts without Python (``ganspacesynth export``; docs/export.md).

The exported graph is :class:`ExportModule`: inputs ``z`` float32 [N, latent_size] and ``pitch``
int64 [N] (MIDI pitches, mapped inside to the model's classes), outputs ``specgram`` float32
[N, 128, 1024, 2] (the denormalised mel spectrogram, as ``GANSynthModel.generate_specgram``) and,
unless left out, ``audio`` float32 [N, 64000] (as ``GANSynthModel.generate``). It is the folded
float32 generator and the same audio code as in Python; N is dynamic.

- ONNX (``torch.onnx.export`` with the dynamo exporter; needs the ``onnx`` and ``onnxscript``
  packages): the audio stage's complex inverse FFT becomes ONNX ``DFT``; checked with
  onnxruntime on CPU.
- TorchScript (``torch.jit.trace``, for libtorch hosts).

Both files carry :func:`export_metadata` (pitches, sizes, input and output names) as JSON: ONNX
in the model's metadata property ``ganspacesynth``, TorchScript in the extra file
``ganspacesynth.json``. Not exported: layer edits (GANSpace directions) and reduced precision.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ganspace.engine import audio
from ganspace.engine.generator import FastGenerator
from ganspace.engine.model import GANSynthModel
from ganspace.errors import InputError

EXPORT_FORMATS = ("onnx", "torchscript")
METADATA_KEY = "ganspacesynth"
INPUT_NAMES = ["z", "pitch"]


def nearest_labels(pitches: list[int]) -> np.ndarray:
    """Label of the nearest known pitch (the lower one on a tie) for every MIDI pitch 0..127:
    int64 [128]; known pitches map to their own label."""
    known = np.asarray(sorted(pitches))
    midi = np.arange(128)
    return np.abs(midi[:, None] - known[None, :]).argmin(axis=1).astype(np.int64)


class ExportModule(nn.Module):
    """The exported computation (see module docstring); float32 on the CPU."""

    label_of_pitch: Tensor  # [128] int64
    norm_a: Tensor  # [2] the normalizer scales (log mel power, mel IF)
    norm_b: Tensor  # [2] and offsets

    def __init__(self, model: GANSynthModel, with_audio: bool = True) -> None:
        super().__init__()
        self.generator = FastGenerator.from_generator(model.generator).to("cpu")
        self.with_audio = with_audio
        self.register_buffer("label_of_pitch", torch.from_numpy(nearest_labels(model.pitches)))
        hp = model.hparams
        self.register_buffer("norm_a", torch.tensor([hp["mag_normalizer_a"],
                                                     hp["p_normalizer_a"]]))
        self.register_buffer("norm_b", torch.tensor([hp["mag_normalizer_b"],
                                                     hp["p_normalizer_b"]]))

    def forward(self, z: Tensor, pitch: Tensor) -> tuple[Tensor, ...]:
        """z [N, latent] float32, pitch [N] int64 MIDI (0..127; unknown pitches play the
        nearest known one) -> (specgram [N, 128, 1024, 2], audio [N, 64000] unless left out)."""
        labels = self.label_of_pitch[pitch.clamp(0, 127)]
        tanh = self.generator(z, labels)
        spec = ((tanh.permute(0, 2, 3, 1) - self.norm_b) / self.norm_a).contiguous()
        if not self.with_audio:
            return (spec,)
        return spec, audio.melspecgrams_to_audio(spec)


def export_metadata(model: GANSynthModel, with_audio: bool) -> dict[str, Any]:
    """What a host needs to call the exported file (stored in it as JSON)."""
    return {
        "format": "ganspacesynth-export",
        "format_version": 1,
        "inputs": {"z": ["N", model.latent_size, "float32"], "pitch": ["N", "int64 MIDI"]},
        "outputs": ({"specgram": ["N", audio.N_FRAMES, audio.N_BINS, 2, "float32"]}
                    | ({"audio": ["N", model.audio_length, "float32"]} if with_audio else {})),
        "latent_size": model.latent_size,
        "pitches": model.pitches,
        "sample_rate": model.sample_rate,
        "audio_length": model.audio_length,
        "provenance": model.provenance,
        "fingerprint": model.fingerprint,
    }


def output_names(with_audio: bool) -> list[str]:
    """``["specgram", "audio"]`` or ``["specgram"]``."""
    return ["specgram", "audio"] if with_audio else ["specgram"]


@torch.no_grad()
def export_model(model: GANSynthModel, fmt: str, out: str | Path,
                 with_audio: bool = True) -> Path:
    """Write ``model`` as an ONNX or TorchScript file (see module docstring); returns ``out``.

    Raises:
        InputError for an unknown format, or ONNX export without the ``onnx`` and ``onnxscript``
        packages (``pip install 'ganspacesynth[export]'``).
    """
    if fmt not in EXPORT_FORMATS:
        raise InputError(f"export format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = ExportModule(model, with_audio).eval()
    example = (torch.zeros(2, model.latent_size), torch.full((2,), model.pitches[0]))
    meta = json.dumps(export_metadata(model, with_audio))
    if fmt == "torchscript":
        with warnings.catch_warnings():  # tracing warnings about constants and Python bools
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(module, example, check_trace=False)
        torch.jit.save(traced, str(path), _extra_files={f"{METADATA_KEY}.json": meta})
        return path
    try:
        import onnx
        import onnxscript  # noqa: F401  (the dynamo exporter needs it)
    except ImportError as exc:
        raise InputError(f"ONNX export needs the onnx and onnxscript packages ({exc}); "
                         "pip install 'ganspacesynth[export]'") from None
    n = torch.export.Dim("n", min=1)
    # The audio stage's tables are cached per device: build them for real now, or the exporter's
    # fake tensors would be cached and leak into later generation.
    audio.audio_tables(torch.device("cpu"), torch.float32)
    quiet = [logging.getLogger(name) for name in ("onnx_ir", "onnxscript", "torch.onnx")]
    levels = [log.level for log in quiet]
    try:
        for log in quiet:  # the exporter's passes log every step at INFO
            log.setLevel(logging.WARNING)
        with warnings.catch_warnings():  # z and pitch share the dynamic axis: a notice
            warnings.simplefilter("ignore")
            program = torch.onnx.export(module, example, input_names=INPUT_NAMES,
                                        output_names=output_names(with_audio),
                                        dynamic_shapes=({0: n}, {0: n}), dynamo=True,
                                        verbose=False)
    finally:
        for log, level in zip(quiet, levels, strict=True):
            log.setLevel(level)
    assert program is not None
    proto = program.model_proto
    onnx.helper.set_model_props(proto, {METADATA_KEY: meta})
    onnx.save(proto, str(path))
    return path
