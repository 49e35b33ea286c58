"""Generator precisions: CPU bfloat16 detection and its override, what ``auto`` resolves to, the
bfloat16 path on a trained model (simulated support on CPUs without it), fidelity, and every
``--precision`` value of every verb that takes it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ganspace.cli import build_parser, main
from ganspace.engine import precision
from ganspace.engine.fidelity import logmel_difference_db, measure_fidelity
from ganspace.engine.generator import FLOAT32_BLOCKS
from ganspace.engine.precision import CPU_BF16_ENV, cpu_supports_bf16, resolve_precision
from ganspace.errors import InputError
from ganspace.formats import load_model

DEFAULT = Path(__file__).resolve().parents[2] / "models" / "default"
PRECISION_VERBS = ["generate", "render-midi", "hallucinate", "bench", "eval", "serve"]


@pytest.fixture
def bf16_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulate a CPU with AVX512-BF16 / AMX."""
    monkeypatch.setenv(CPU_BF16_ENV, "1")


@pytest.fixture
def no_bf16_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulate a CPU without bfloat16 support."""
    monkeypatch.setenv(CPU_BF16_ENV, "0")


@pytest.fixture(scope="module")
def trained() -> Path:
    assert (DEFAULT / "model.json").is_file(), "models/default is not shipped"
    return DEFAULT


def test_override_and_detection(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(CPU_BF16_ENV, "1")
    assert cpu_supports_bf16()
    monkeypatch.setenv(CPU_BF16_ENV, "0")
    assert not cpu_supports_bf16()
    monkeypatch.delenv(CPU_BF16_ENV)
    assert cpu_supports_bf16() == precision.cpu_bf16_hardware()
    # torch's cpuinfo, when it has get_capabilities
    for caps, want in [({"amx_bf16": True, "avx2": True}, True),
                       ({"avx512_bf16": True}, True),
                       ({"avx512_f": True, "avx2": True, "amx_bf16": False}, False)]:
        monkeypatch.setattr(torch.cpu, "get_capabilities", lambda caps=caps: caps, raising=False)
        precision._cpu_flags.cache_clear()
        assert precision.cpu_bf16_hardware() == (want and torch.backends.mkldnn.is_available())
    # /proc/cpuinfo otherwise
    monkeypatch.delattr(torch.cpu, "get_capabilities", raising=False)
    cpuinfo = tmp_path / "cpuinfo"
    monkeypatch.setattr(precision, "CPUINFO", cpuinfo)
    for text, want in [("flags\t\t: fpu avx2 avx512f\n", False),
                       ("flags\t\t: fpu avx2 avx512f avx512_bf16\n", True),
                       ("Features\t: fp asimd bf16\n", True)]:
        cpuinfo.write_text(text)
        precision._cpu_flags.cache_clear()
        assert precision.cpu_bf16_hardware() == (want and torch.backends.mkldnn.is_available())
    cpuinfo.unlink()
    precision._cpu_flags.cache_clear()
    assert not precision.cpu_bf16_hardware()
    monkeypatch.undo()
    precision._cpu_flags.cache_clear()


def test_resolve_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CPU_BF16_ENV, "0")
    assert resolve_precision("auto", "cpu") == torch.float32
    assert resolve_precision("float32", "cpu") == torch.float32
    with pytest.raises(InputError, match=r"bfloat16 needs a CPU with AVX512-BF16 or AMX .* "
                       r"Use float32 or auto \(set GANSPACE_CPU_BF16=1 to force it anyway\)"):
        resolve_precision("bfloat16", "cpu")
    with pytest.raises(InputError, match="precision float16 is only offered on CUDA"):
        resolve_precision("float16", "cpu")
    with pytest.raises(InputError, match="precision must be one of auto, float32, bfloat16, "
                       "float16, got 'float64'"):
        resolve_precision("float64", "cpu")
    monkeypatch.setenv(CPU_BF16_ENV, "1")
    assert resolve_precision("auto", "cpu") == torch.bfloat16
    assert resolve_precision("bfloat16", "cpu") == torch.bfloat16
    # other devices (meta: the device-safety tests) offer float32 only
    assert resolve_precision("auto", "meta") == torch.float32
    with pytest.raises(InputError, match="only offered on CUDA"):
        resolve_precision("bfloat16", "meta")


def test_bfloat16_refused_without_support(no_bf16_cpu: None, trained: Path) -> None:
    with pytest.raises(InputError, match="bfloat16 needs a CPU with AVX512-BF16"):
        load_model(trained, device="cpu", precision="bfloat16")
    assert load_model(trained, device="cpu", precision="auto").precision == "float32"


def test_bfloat16_path_on_a_trained_model(bf16_cpu: None, trained: Path) -> None:
    model = load_model(trained, device="cpu", precision="auto")
    assert model.precision == "bfloat16"
    fast = model.fast_generator
    for k in range(1, model.config.num_blocks + 1):
        want = torch.float32 if k <= FLOAT32_BLOCKS else torch.bfloat16
        assert fast.get_buffer(f"c1_{k}_w").dtype == want
        assert fast.get_buffer(f"rgb_{k}_w").dtype == torch.float32
    assert fast.get_buffer("c0_1_w").dtype == torch.float32
    assert fast.get_buffer("c0_3_w").dtype == torch.bfloat16
    f32 = model.with_precision("float32")
    assert f32.generator is model.generator and model.with_precision("auto") is model
    z = model.random_z(3, seed=1)
    low, ref = model.generate(z, [40, 52, 64]), f32.generate(z, [40, 52, 64])
    assert low.dtype == np.float32 and np.isfinite(low).all()
    assert not np.array_equal(low, ref)  # it really ran in bfloat16
    median, per_note = logmel_difference_db(ref, low)
    assert 0.0 < median < 1.5 and per_note.shape == (3,)  # 0.42 dB over 200 notes
    act = model.activations(z, 40, "conv1_3")
    assert act.dtype == torch.float32 and act.shape == (3, *model.layer_shape("conv1_3"))


def test_fidelity_measure(trained: Path) -> None:
    model = load_model(trained, device="cpu")
    same = measure_fidelity(model, "float32", count=2, in_tune=lambda n, p, sr: 0.5)
    assert (same.median_db, same.worst_note_db, same.in_tune, same.in_tune_float32) == (
        0.0, 0.0, 0.5, 0.5)
    notes = model.generate(model.random_z(2, seed=0), 50)
    louder = notes * 10 ** (3 / 20)  # +3 dB everywhere
    median, per_note = logmel_difference_db(notes, louder)
    assert median == pytest.approx(3.0, abs=0.05) and per_note == pytest.approx(3.0, abs=0.05)
    assert "float32 vs float32 on 2 notes: median 0.00 dB" in same.describe()


def test_every_verb_takes_precision() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "verb")
    for verb in PRECISION_VERBS:
        action = next(a for a in sub.choices[verb]._actions if a.dest == "precision")
        assert list(action.choices) == ["auto", "float32", "bfloat16", "float16"]
        assert action.default == ("auto" if verb == "serve" else "float32")


@pytest.mark.parametrize("verb", PRECISION_VERBS)
def test_bad_precision_values(verb: str, tiny_model_dir: Path, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    out = str(tmp_path / "x.wav")
    midi = tmp_path / "x.mid"
    args = {
        "generate": ["generate", str(tiny_model_dir), "--pitch", "60", "--out", out],
        "render-midi": ["render-midi", str(tiny_model_dir), str(midi), "--out", out],
        "hallucinate": ["hallucinate", str(tiny_model_dir), "--keypoints", "2", "--out", out],
        "bench": ["bench", str(tiny_model_dir), "--batch", "1", "--repeats", "1"],
        "eval": ["eval", str(tiny_model_dir), "--count", "2"],
        "serve": ["serve", "--model", str(tiny_model_dir), "--port", "0"],
    }[verb]
    with pytest.raises(SystemExit) as exc:
        main([*args, "--precision", "float64"])
    assert exc.value.code == 2
    assert "invalid choice: 'float64'" in capsys.readouterr().err
    monkeypatch.setenv(CPU_BF16_ENV, "0")
    for value, message in [("bfloat16", "bfloat16 needs a CPU with AVX512-BF16 or AMX"),
                           ("float16", "float16 is only offered on CUDA")]:
        assert main([*args, "--device", "cpu", "--precision", value]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_generate_in_every_cpu_precision(tiny_model_dir: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    import soundfile as sf

    notes = {}
    for env, value in [("0", "auto"), ("0", "float32"), ("1", "bfloat16"), ("1", "auto")]:
        monkeypatch.setenv(CPU_BF16_ENV, env)
        out = tmp_path / f"{value}{env}.wav"
        assert main(["generate", str(tiny_model_dir), "--pitch", "60", "--seed", "3", "--device",
                     "cpu", "--precision", value, "--out", str(out)]) == 0
        notes[value, env] = sf.read(out, dtype="float32")[0]
    capsys.readouterr()
    np.testing.assert_array_equal(notes["auto", "0"], notes["float32", "0"])
    np.testing.assert_array_equal(notes["auto", "1"], notes["bfloat16", "1"])
    assert np.isfinite(notes["bfloat16", "1"]).all()
    assert not np.array_equal(notes["bfloat16", "1"], notes["float32", "0"])
    monkeypatch.setenv(CPU_BF16_ENV, "1")
    assert main(["eval", str(tiny_model_dir), "--count", "2", "--precision", "auto",
                 "--json"]) == 0
    assert '"precision": "bfloat16"' in capsys.readouterr().out


def test_bench_reduced_precision_reports_ratio_and_fidelity(
        bf16_cpu: None, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert main(["bench", str(tiny_model_dir), "--batch", "2", "--repeats", "1", "--precision",
                 "auto", "--baseline", "--fidelity-notes", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["precision"], report["asked_precision"]) == ("bfloat16", "auto")
    assert {t["stage"] for t in report["timings"]} == {
        "generator", "generator_baseline", "audio", "total", "total_float32"}
    assert any("z to audio" in line and "x float32" in line for line in report["ratios"])
    fid = report["fidelity"]
    assert fid["precision"] == "bfloat16" and fid["notes"] == 2 and fid["median_db"] > 0
    assert fid["in_tune"] is not None and "bfloat16 vs float32 on 2 notes" in fid["text"]
