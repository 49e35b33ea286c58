"""ganspacesynth export: ONNX (run by onnxruntime on CPU) and TorchScript files of Magenta's
fixture checkpoint give Magenta's generator output and audio."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import rel_err

from ganspace.cli import main
from ganspace.engine.export import METADATA_KEY, nearest_labels
from ganspace.formats import load_model

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install -e "
                          "'.[test]' installs it)")


@pytest.fixture(scope="module")
def ref(magenta_small: Path) -> dict[str, np.ndarray]:
    with np.load(magenta_small / "reference_io.npz") as f:
        return {k: f[k] for k in f.files}


def test_nearest_labels() -> None:
    table = nearest_labels([40, 30, 50])
    assert table.shape == (128,) and table.dtype == np.int64
    assert list(table[[0, 30, 34, 35, 36, 40, 45, 46, 50, 127]]) == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_onnx_matches_magenta(magenta_small: Path, ref: dict[str, np.ndarray],
                              tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "small.onnx"
    assert main(["export", str(magenta_small), "--format", "onnx", "--out", str(out)]) == 0
    assert "outputs specgram, audio" in capsys.readouterr().out
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["z", "pitch"]
    assert [o.name for o in session.get_outputs()] == ["specgram", "audio"]
    meta = json.loads(session.get_modelmeta().custom_metadata_map[METADATA_KEY])
    assert meta["latent_size"] == 32 and meta["pitches"] == list(range(24, 85))
    spec, audio = session.run(None, {"z": ref["z"].astype(np.float32),
                                     "pitch": ref["pitches"].astype(np.int64)})
    assert spec.shape == (4, 128, 1024, 2) and audio.shape == (4, 64000)
    assert rel_err(spec, ref["generator_output_denorm"]) <= 1e-4
    assert rel_err(audio, ref["audio_api"]) <= 1e-3
    # dynamic batch, down to one note; the PyTorch model gives the same
    model = load_model(magenta_small, device="cpu")
    z1 = model.random_z(1, seed=3)
    spec1, audio1 = session.run(None, {"z": z1, "pitch": np.array([61], np.int64)})
    assert rel_err(spec1, model.generate_specgram(z1, 61)) <= 1e-4
    assert rel_err(audio1, model.generate(z1, 61)) <= 1e-3


def test_torchscript_matches_magenta(magenta_small: Path, ref: dict[str, np.ndarray],
                                     tmp_path: Path) -> None:
    out = tmp_path / "small.pt"
    assert main(["export", str(magenta_small), "--format", "torchscript", "--out",
                 str(out), "--no-audio"]) == 0
    extra = {f"{METADATA_KEY}.json": ""}
    module = torch.jit.load(str(out), _extra_files=extra)
    meta = json.loads(extra[f"{METADATA_KEY}.json"])
    assert list(meta["outputs"]) == ["specgram"] and meta["sample_rate"] == 16000
    assert zipfile.is_zipfile(out)
    z = torch.from_numpy(np.concatenate([ref["z"], ref["z"][:1]]))  # batch 5, traced at 2
    pitches = torch.from_numpy(np.concatenate([ref["pitches"], ref["pitches"][:1]]))
    with torch.no_grad():
        (spec,) = module(z, pitches)
    assert spec.shape == (5, 128, 1024, 2)
    assert rel_err(spec[:4], ref["generator_output_denorm"]) <= 1e-4
    assert rel_err(spec[4], spec[0]) <= 1e-4  # the same note in another batch row
    # a pitch the model does not know plays the nearest known one
    with torch.no_grad():
        (high,) = module(z[:1], torch.tensor([90]))
        (top,) = module(z[:1], torch.tensor([84]))
    torch.testing.assert_close(high, top)


def test_export_errors(magenta_small: Path, tmp_path: Path,
                       capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["export", str(magenta_small), "--format", "tflite", "--out", str(tmp_path / "x")])
    assert "invalid choice: 'tflite'" in capsys.readouterr().err
