"""GANSpace CLI verbs end to end on the tiny native model (in-process), and gansynth_ganspace."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from ganspace.cli import main
from ganspace.cli.legacy import run as legacy_run
from ganspace.cli.space import parse_coefficient_steps
from ganspace.errors import InputError
from ganspace.space.directions import load_directions
from ganspace.space.grid import grid_coefficients, grid_size

VERBS = ["layers", "pca", "import-pca", "hallucinate", "grid", "bench-pca"]
ENV = ["--attack", "0.05", "--sustain", "0.05", "--release", "0.05"]


@pytest.fixture(scope="module")
def dirs_file(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("dirs") / "tiny_conv0.safetensors"
    assert main(["pca", str(tiny_model_dir), "--samples", "200", "--components", "16",
                 "--device", "cpu", "--no-progress", "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("verb", VERBS)
def test_help(verb, capsys):
    with pytest.raises(SystemExit) as exc:
        main([verb, "--help"])
    assert exc.value.code == 0
    assert "usage: ganspacesynth " + verb in capsys.readouterr().out


def test_legacy_help(capsys):
    with pytest.raises(SystemExit) as exc:
        legacy_run(["--help"])
    assert exc.value.code == 0
    assert "--random_z_count" in capsys.readouterr().out


def test_layers(tiny_model_dir, capsys):
    assert main(["layers", str(tiny_model_dir)]) == 0
    out = capsys.readouterr().out
    assert "conv0" in out and "2 x 16 x 8" in out and "256" in out and "conv1_7" in out
    assert main(["layers", str(tiny_model_dir), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0] == {"layer": "conv0", "shape": [2, 16, 8], "values": 256}
    assert rows[-1]["layer"] == "conv1_7" and rows[-1]["shape"] == [128, 1024, 8]


def test_pca(tiny_model_dir, dirs_file, tmp_path, capsys):
    d = load_directions(dirs_file)
    assert d.count == 16 and d.layer == "conv0" and d.meta["samples"] == 200
    out = tmp_path / "all.safetensors"
    assert main(["pca", str(tiny_model_dir), "--samples", "300", "--components", "all",
                 "--estimator", "pca", "--layer", "conv1", "--seed", "4", "--pitch", "50",
                 "--dtype", "float32", "--device", "cpu", "--no-progress",
                 "--out", str(out)]) == 0
    assert "K=256" in capsys.readouterr().out
    e = load_directions(out)
    assert e.count == 256 and e.layer == "conv1"
    assert e.meta["seed"] == 4 and e.meta["pitch"] == 50 and e.meta["estimator"] == "pca"
    assert main(["pca", str(tiny_model_dir), "--samples", "10", "--layer", "conv9",
                 "--device", "cpu", "--out", str(out)]) == 2
    assert "unknown layer" in capsys.readouterr().err


def test_import_pca(tiny_model_dir, dirs_file, tmp_path, capsys):
    d = load_directions(dirs_file)
    legacy = {"layer": "conv0", "estimator": "ipca", "comp": d.components, "stdev": d.stdev,
              "var_ratio": d.var_ratio, "global_mean": d.mean}
    src = tmp_path / "tiny_conv0_ipca_200.pickle"
    src.write_bytes(pickle.dumps(legacy))
    out = tmp_path / "imported.safetensors"
    assert main(["import-pca", str(src), "--out", str(out), "--model",
                 str(tiny_model_dir)]) == 0
    e = load_directions(out)
    assert e.fingerprint == d.fingerprint and e.meta["samples"] == 200
    np.testing.assert_array_equal(e.components, d.components)  # float16 values survive as is
    assert main(["import-pca", str(src), "--out", str(tmp_path / "nofp.safetensors")]) == 0
    assert "no model fingerprint" in capsys.readouterr().out

    class Attack:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    bad = tmp_path / "bad.pickle"
    bad.write_bytes(pickle.dumps({**legacy, "comp": Attack()}))
    assert main(["import-pca", str(bad), "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "refused global posix.system" in capsys.readouterr().err
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "x.safetensors").exists()


def test_hallucinate_z(tiny_model_dir, dirs_file, tmp_path, capsys):
    out = tmp_path / "clip.wav"
    assert main(["hallucinate", str(tiny_model_dir), "--keypoints", "2", "--steps", "1",
                 "--seed", "1", "--spacing", "0.1", *ENV, "--directions", str(dirs_file),
                 "--coefficients", "1,-1", "--device", "cpu", "--no-progress",
                 "--out", str(out)]) == 0
    assert "3 sounds" in capsys.readouterr().out
    info = sf.info(out)
    assert info.subtype == "PCM_24" and info.samplerate == 16000
    assert info.frames == round((2 * 0.1 + 0.15) * 16000)
    clip, _ = sf.read(out)
    assert np.abs(clip).max() == pytest.approx(0.5, abs=1e-4)


def test_hallucinate_coefficient_steps(tiny_model_dir, dirs_file, tmp_path, capsys):
    out = tmp_path / "noz.wav"
    steps = tmp_path / "steps.npy"
    np.save(steps, np.array([[0.0, 1.0, 0.0], [1.0, 0.0, -1.0]], np.float32))
    for spec in (str(steps), "0,1,0;1,0,-1"):
        assert main(["hallucinate", str(tiny_model_dir), "--coefficient-steps", spec,
                     "--subdivisions", "2", "--spacing", "0", *ENV, "--directions",
                     str(dirs_file), "--subtype", "FLOAT", "--device", "cpu", "--no-progress",
                     "--out", str(out)]) == 0
        assert "3 sounds" in capsys.readouterr().out
        assert sf.info(out).frames == round(0.15 * 16000)


@pytest.mark.parametrize("args,message", [
    (["--keypoints", "2", "--attack", "3", "--sustain", "1", "--release", "1"],
     "longer than a note"),
    (["--keypoints", "2", "--spacing", "-1"], "spacing must be"),
    ([], "one of them"),
    (["--coefficient-steps", "0,1"], "needs --directions"),
    (["--keypoints", "2", "--coefficients", "1"], "needs --directions"),
])
def test_hallucinate_refusals(tiny_model_dir, tmp_path, capsys, args, message):
    out = tmp_path / "never.wav"
    assert main(["hallucinate", str(tiny_model_dir), *args, "--device", "cpu",
                 "--out", str(out)]) == 2
    assert message in capsys.readouterr().err and not out.exists()


def test_parse_coefficient_steps(tmp_path):
    np.testing.assert_array_equal(parse_coefficient_steps("1,2;3,4"), [[1, 2], [3, 4]])
    with pytest.raises(InputError, match="same number"):
        parse_coefficient_steps("1,2;3")
    with pytest.raises(InputError, match="numbers"):
        parse_coefficient_steps("1,x")
    with pytest.raises(InputError, match="cannot read"):
        parse_coefficient_steps(str(tmp_path / "absent.npy"))


def test_grid(tiny_model_dir, dirs_file, tmp_path, capsys):
    png = tmp_path / "grid.png"
    wavs = tmp_path / "wavs"
    assert main(["grid", str(tiny_model_dir), "--directions", str(dirs_file), "--components",
                 "0,2", "--range", "-2", "2", "--steps", "3", "--thumb", "32", "--seed", "1",
                 "--device", "cpu", "--wav-dir", str(wavs), "--out", str(png)]) == 0
    with Image.open(png) as img:
        assert img.size == grid_size(3, 32) and img.mode == "RGB"
        pixels = np.asarray(img)
    left, top = 72, 24
    tile = pixels[top : top + 32, left : left + 32]
    assert tile.std() > 0  # a spectrogram, not a blank tile
    names = sorted(p.name for p in wavs.iterdir())
    assert len(names) == 9 and "d0_+2.00_d2_-2.00.wav" in names
    assert sf.info(wavs / names[0]).frames == 64000
    assert main(["grid", str(tiny_model_dir), "--directions", str(dirs_file), "--noz",
                 "--steps", "2", "--thumb", "16", "--device", "cpu", "--out", str(png)]) == 0
    with Image.open(png) as img:
        assert img.size == grid_size(2, 16)
    capsys.readouterr()
    assert main(["grid", str(tiny_model_dir), "--directions", str(dirs_file), "--components",
                 "0,16", "--device", "cpu", "--out", str(png)]) == 2
    assert "hold only 16" in capsys.readouterr().err


def test_grid_coefficients_layout():
    c = grid_coefficients(1, 0, np.array([-1.0, 0.0, 1.0]))
    assert c.shape == (9, 2)
    np.testing.assert_array_equal(c[:3, 1], [-1, 0, 1])  # direction a along the columns
    np.testing.assert_array_equal(c[::3, 0], [1, 0, -1])  # direction b, positive at the top


def test_bench_pca(tiny_model_dir, capsys):
    assert main(["bench-pca", str(tiny_model_dir), "--samples", "300", "--compare-ipca",
                 "--device", "cpu", "--threads", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ipca_components"] == 256 and out["samples"] == 300
    assert out["cov_s"] > 0 and out["ipca_s"] > 0 and out["stdev_rel_diff"] < 1e-3
    assert out["file_bytes"]["float16"] < out["file_bytes"]["float32"]
    assert out["float16_offset_rel_err"] < 1e-3
    assert main(["bench-pca", "--samples", "10"]) == 2


def test_legacy_gansynth_ganspace(tiny_model_dir, tmp_path, capsys):
    assert legacy_run(["--ckpt_dir", str(tiny_model_dir), "--list_layers"]) == 0
    assert "conv0: 2x16x8 (256 values)" in capsys.readouterr().out
    out = tmp_path / "tiny_conv0_ipca_300.pickle"
    assert legacy_run([f"--ckpt_dir={tiny_model_dir}", "--layer=conv0", "--random_z_count=300",
                       "--estimator=ipca", f"--pca_out_file={out}", "--seed=2", "--pitch=32",
                       "--pca_batch_size=64", "--components=all", "--device=cpu"]) == 0
    assert not out.exists()
    d = load_directions(out.with_suffix(".safetensors"))
    assert d.count == 256 and d.meta["estimator"] == "ipca" and d.meta["seed"] == 2
    capsys.readouterr()
    for est in ("fbpca", "ica", "spca"):
        assert legacy_run(["--ckpt_dir", str(tiny_model_dir), "--estimator", est]) == 2
        assert f"--estimator {est}" in capsys.readouterr().err
