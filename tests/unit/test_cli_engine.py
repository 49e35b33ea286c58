"""Engine verbs of the ganspacesynth CLI, in-process; and --help on every verb."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

from ganspace.cli import build_parser, main
from ganspace.formats import load_model


def verbs() -> list[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "verb")
    return sorted(sub.choices)


def test_every_verb_has_help(capsys):
    names = verbs()
    assert {"import", "info", "generate", "render-midi", "bench"} <= set(names)
    for verb in names:
        with pytest.raises(SystemExit) as exc:
            main([verb, "--help"])
        assert exc.value.code == 0
        assert "usage: ganspacesynth " + verb in capsys.readouterr().out


def test_console_script_runs():
    exe = shutil.which("ganspacesynth")
    assert exe, "the ganspacesynth console script is not installed (pip install -e .)"
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True).stdout
    assert "generate" in out and "serve" in out


def test_generate_wavs(tiny_model_dir, tmp_path):
    out = tmp_path / "note.wav"
    assert main(["generate", str(tiny_model_dir), "--pitch", "60", "--count", "2", "--seed", "4",
                 "--out", str(out)]) == 0
    a, sr = sf.read(tmp_path / "note_0.wav", dtype="float32")
    b, _ = sf.read(tmp_path / "note_1.wav", dtype="float32")
    assert sr == 16000 and a.shape == (64000,) and not np.array_equal(a, b)
    model = load_model(tiny_model_dir)
    np.testing.assert_array_equal(a, model.generate(model.random_z(2, seed=4), 60)[0])

    z = model.random_z(1, seed=9)
    np.save(tmp_path / "z.npy", z)
    one = tmp_path / "one.wav"
    assert main(["generate", str(tiny_model_dir), "--pitch", "48", "--z", str(tmp_path / "z.npy"),
                 "--normalize", "--out", str(one)]) == 0
    c, _ = sf.read(one, dtype="float32")
    assert np.isclose(np.abs(c).max(), 1.0)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pitch", "100"], "pitch 100 is not one this model knows; valid pitches: 24-84"),
        (["--pitch", "60", "--count", "0"], "--count must be >= 1"),
    ],
)
def test_generate_errors(tiny_model_dir, tmp_path, capsys, args, message):
    assert main(["generate", str(tiny_model_dir), *args, "--out", str(tmp_path / "x.wav")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_generate_bad_z_file(tiny_model_dir, tmp_path, capsys):
    np.save(tmp_path / "wide.npy", np.zeros((1, 9), np.float32))
    nan = np.zeros((1, 8), np.float32)
    nan[0, 0] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    (tmp_path / "junk.npy").write_bytes(b"junk")
    for name, message in [("wide", "z has width 9"), ("nan", "NaN or inf"),
                          ("junk", "cannot read latents")]:
        assert main(["generate", str(tiny_model_dir), "--pitch", "60", "--z",
                     str(tmp_path / f"{name}.npy"), "--out", str(tmp_path / "x.wav")]) == 2
        assert message in capsys.readouterr().err


def test_bench_json(tiny_model_dir, capsys):
    assert main(["bench", str(tiny_model_dir), "--batch", "1,2", "--repeats", "1", "--baseline",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    stages = {(t["stage"], t["batch"]) for t in report["timings"]}
    assert stages == {(s, b) for s in ("generator", "generator_baseline", "audio", "total")
                      for b in (1, 2)}
    assert all(t["ms_per_note"] > 0 and t["notes_per_s"] > 0 for t in report["timings"])
    assert report["device"] == "cpu"


def test_bench_needs_one_model(capsys):
    assert main(["bench"]) == 2
    assert "--random published" in capsys.readouterr().err


def test_device_values_are_checked(tiny_model_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["generate", str(tiny_model_dir), "--pitch", "60", "--device", "gpu", "--out",
              str(tmp_path / "x.wav")])
    assert exc.value.code == 2
    assert "expected auto, cpu, cuda or cuda:N, got 'gpu'" in capsys.readouterr().err

