"""Evaluation: f0 estimator and descriptors on synthetic signals, reports on a tiny model, and the
shipped default model."""

from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import pytest

import ganspace
from ganspace.cli import main
from ganspace.engine.model import GANSynthModel
from ganspace.errors import InputError
from ganspace.space.directions import save_directions
from ganspace.space.pca import compute_directions
from ganspace.train.evaluate import (
    DESCRIPTORS,
    cents,
    decay_time,
    direction_labels,
    direction_report,
    estimate_f0,
    evaluate,
    format_report,
    midi_to_hz,
    pitch_report,
    spearman,
    spectral_centroid,
)

SR = 16000
T = np.arange(64000) / SR
DEFAULT = Path(__file__).resolve().parents[2] / "models" / "default"


def tone(f0: float, partials: int = 1, missing_fundamental: bool = False) -> np.ndarray:
    out = np.zeros_like(T)
    for n in range(2 if missing_fundamental else 1, partials + 1):
        if n * f0 < 7600.0:  # no aliasing
            out += np.sin(2 * np.pi * n * f0 * T + n) / n
    return (0.5 * out / np.abs(out).max()).astype(np.float32)


@pytest.mark.parametrize("f0", [32.7, 65.4, 110.0, 261.63, 523.25, 1046.5, 1760.0])
def test_f0_of_sines_and_harmonic_tones(f0: float) -> None:
    for x in (tone(f0), tone(f0, partials=12), tone(f0, partials=12, missing_fundamental=True)):
        est, aperiodicity = estimate_f0(x)
        assert abs(cents(est, 69 + 12 * np.log2(f0 / 440))) < 5.0
        assert aperiodicity < 0.15


def test_f0_of_noise_and_silence_is_nan() -> None:
    noise = np.random.default_rng(0).standard_normal(64000).astype(np.float32)
    assert np.isnan(estimate_f0(noise)[0])
    assert np.isnan(estimate_f0(np.zeros(64000, np.float32))[0])


def test_cents_and_midi() -> None:
    assert midi_to_hz(69) == 440.0 and midi_to_hz(81) == 880.0
    assert cents(440.0, 69) == 0.0
    assert cents(midi_to_hz(70), 69) == pytest.approx(100.0)
    assert cents(220.0, 69) == pytest.approx(-1200.0)


def test_descriptors() -> None:
    assert spectral_centroid(tone(1000.0)) == pytest.approx(1000.0, rel=0.01)
    bright = spectral_centroid(tone(200.0, partials=30))
    assert bright > spectral_centroid(tone(200.0, partials=3)) > 200.0
    tau = 0.25
    decaying = tone(300.0) * np.exp(-T / tau)
    # -20 dB after tau * ln(10) seconds; frames are 1024 samples every 256 (16 ms)
    assert decay_time(decaying) == pytest.approx(tau * np.log(10), abs=0.05)
    assert decay_time(tone(300.0)) > 3.5  # never falls by 20 dB
    assert np.isnan(decay_time(np.zeros(64000)))


def test_pitch_report_counts() -> None:
    notes = np.stack([
        tone(midi_to_hz(60), 8),  # in tune
        tone(midi_to_hz(61), 8),  # a semitone sharp
        tone(midi_to_hz(48), 8),  # an octave low
        np.full(64000, np.nan, np.float32),
        np.zeros(64000, np.float32),
        np.random.default_rng(1).standard_normal(64000).astype(np.float32),
    ])
    r = pitch_report(notes, np.array([60, 60, 60, 60, 60, 62]), SR)
    counts = (r["notes"], r["in_tune"], r["non_finite"], r["silent"], r["unvoiced"])
    assert counts == (6, 1, 1, 1, 1)
    assert r["octave_errors"] == 1
    assert r["in_tune_fraction"] == pytest.approx(1 / 6, abs=1e-4)
    assert r["per_pitch_in_tune"] == {"60": 0.2, "62": 0.0}


def test_evaluate_tiny_model_with_directions(tiny_model: GANSynthModel, tmp_path: Path) -> None:
    r = evaluate(tiny_model, count=6, seed=3)
    p = r["pitch"]
    assert p["notes"] == 6 and p["non_finite"] == 0
    assert 0.0 <= p["in_tune_fraction"] <= 1.0 and np.isfinite(r["seconds"])
    assert r["model"]["pitches"] == [24, 84] and r["model"]["progress"] == 6.0
    assert "in tune (+-50 cents)" in format_report(r)
    d = compute_directions(tiny_model, "conv0", samples=64, seed=0, components=3)
    path = save_directions(d, tmp_path / "dirs.safetensors")
    r = evaluate(tiny_model, count=3, seed=3, directions=path, components=2)
    comps = r["directions"]["components"]
    assert [c["component"] for c in comps] == [0, 1]
    for c in comps:
        assert set(c["descriptors"]) == set(DESCRIPTORS)
        assert all(0.0 <= v["monotonic_fraction"] <= 1.0 for v in c["descriptors"].values())
    assert "c1 (var" in format_report(r)
    with pytest.raises(InputError, match="count"):
        evaluate(tiny_model, count=0)


class _SweepModel:
    """Stands in for a model: direction 0 makes notes louder, direction 1 brighter (more
    partials), direction 2 changes nothing measurable on purpose (it flips a note's sign)."""

    sample_rate = SR

    def generate(self, z: np.ndarray, pitches: list[int], directions: object,
                 coefficients: np.ndarray) -> np.ndarray:
        c = np.zeros(3)
        c[: len(coefficients)] = coefficients
        notes = []
        for i, p in enumerate(pitches):
            x = tone(midi_to_hz(p), partials=int(6 + 2 * c[1] + i % 2))
            notes.append(x * 10 ** (c[0] / 4) * (-1 if c[2] > 0 else 1))
        return np.stack(notes)


def test_direction_report_measures_and_labels() -> None:
    directions = types.SimpleNamespace(count=3, var_ratio=np.array([0.3, 0.2, 0.1]))
    model = _SweepModel()
    comps = direction_report(model, directions, np.zeros((4, 2)), np.array([48, 52, 55, 60]),
                             components=3)  # type: ignore[arg-type]
    assert [c["label"] for c in comps] == ["level", "brightness", None]
    level = comps[0]["descriptors"]["level"]
    assert level["monotonic_fraction"] == 1.0 and level["spearman_median"] == 1.0
    assert level["change"] == pytest.approx(20.0, abs=0.1)  # +-2 std -> 10 ** (4 / 4): 20 dB
    assert comps[1]["descriptors"]["centroid"]["sign"] == 1.0
    labels = direction_labels(comps)
    assert labels == {
        "0": {"label": "level", "descriptor": "level", "sign": 1.0, "monotonic_fraction": 1.0,
              "spearman_median": 1.0},
        "1": {"label": "brightness", "descriptor": "centroid", "sign": 1.0,
              "monotonic_fraction": 1.0, "spearman_median": 1.0},
    }
    assert spearman(np.arange(5.0), -np.arange(5.0) ** 3) == pytest.approx(-1.0)
    assert np.isnan(spearman(np.arange(5.0), np.ones(5)))


def test_cli_eval_json(tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", str(tiny_model_dir), "--count", "2", "--json", "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["pitch"]["notes"] == 2 and report["model"]["path"] == str(tiny_model_dir)


def test_default_model_generates_finite_audio_at_every_pitch() -> None:
    assert (DEFAULT / "model.json").is_file(), "models/default is not shipped"
    model = ganspace.load_model(DEFAULT, device="cpu")
    assert model.pitches[-1] - model.pitches[0] >= 36  # three octaves or more
    assert model.generator.cfg.progress == model.generator.cfg.num_blocks - 1
    size = sum(f.stat().st_size for f in DEFAULT.iterdir())
    assert size <= 30 * 2**20
    notes = model.generate(model.random_z(len(model.pitches), seed=0), model.pitches)
    assert notes.shape == (len(model.pitches), 64000) and np.isfinite(notes).all()
    assert (np.abs(notes).max(axis=1) > 1e-3).all()
    directions = ganspace.load_directions(DEFAULT / "directions.safetensors")
    directions.check_compatible(model)
    assert directions.count >= 16  # the HALLU patch has 16 sliders
    edited = model.generate(None, model.pitches[:2], directions=directions,
                            coefficients=np.ones((2, 16), np.float32))
    assert np.isfinite(edited).all()


def test_cli_eval_writes_measured_labels(tiny_model: GANSynthModel, tiny_model_dir: Path,
                                         tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    path = save_directions(compute_directions(tiny_model, "conv0", samples=64, seed=0,
                                              components=3), tmp_path / "d.safetensors")
    assert main(["eval", str(tiny_model_dir), "--count", "2", "--write-labels"]) == 2
    entry = {"sign": -1.0, "monotonic_fraction": 0.75, "spearman_median": -1.0, "change": -0.5}
    measured = [{"component": i, "var_ratio": 0.1, "in_tune_fraction": [1.0, 1.0],
                 "label": label, "descriptors": {"decay": entry}}
                for i, label in enumerate(["decay", None])]
    monkeypatch.setattr("ganspace.train.evaluate.direction_report",
                        lambda *a, **k: measured)
    assert main(["eval", str(tiny_model_dir), "--count", "2", "--directions", str(path),
                 "--components", "2", "--write-labels", "--device", "cpu"]) == 0
    d = ganspace.load_directions(path)
    assert d.labels == {0: "decay"} and d.meta["labels"]["0"]["monotonic_fraction"] == 0.75
    assert d.meta["estimator"] == "cov"  # the rest of the file is kept
    d.meta["labels"] = {"1": {"label": "../etc"}, "7": {"label": "x"}, "x": 3}
    assert d.labels == {}


def test_installed_package_ships_the_model_but_not_its_training_state() -> None:
    """setup.cfg lists models/default's files one by one (a glob would also take training/,
    the committed training state, into the installed package)."""
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(DEFAULT.parents[1] / "setup.cfg")
    shipped = cfg["options.data_files"]["share/ganspacesynth/models/default"].split()
    assert not any("training" in f or "*" in f for f in shipped)
    root = DEFAULT.parents[1]
    assert all((root / f).is_file() for f in shipped)
    files = {str(p.relative_to(root)) for p in DEFAULT.iterdir() if p.is_file()}
    assert files == set(shipped)


def test_committed_training_state_is_complete() -> None:
    """models/default/training/ (what scripts/train_default.sh resumes on any machine): the
    networks load into the generator its hparams describe, Adam's moments fit them, and the log
    ends where the state is."""
    import torch
    from safetensors.torch import load_file

    from ganspace.engine.generator import Generator, GeneratorConfig

    state_dir = DEFAULT / "training"
    assert (state_dir / "state.json").is_file(), "no committed training state"
    state = json.loads((state_dir / "state.json").read_text())
    assert state["format"] == "ganspacesynth-train-checkpoint" and state["dataset_fingerprint"]
    hp = state["hparams"]
    cfg = GeneratorConfig.from_hparams(hp, len(state["pitches"]), int(hp["num_resolutions"]), 0.0)
    params = dict(Generator(cfg).named_parameters())
    for name in ("generator", "generator_ema"):
        tensors = load_file(str(state_dir / f"{name}.safetensors"))
        assert {k: tuple(v.shape) for k, v in tensors.items()} == \
            {k: tuple(v.shape) for k, v in params.items()}
        assert all(torch.isfinite(v).all() for v in tensors.values())
    adam = load_file(str(state_dir / "optimizer.safetensors"))
    shapes = [tuple(p.shape) for p in params.values()]
    for key, value in adam.items():
        prefix, index, kind = key.split(".")
        if prefix == "g" and kind != "step":
            assert tuple(value.shape) == shapes[int(index)], key
    assert {int(k.split(".")[1]) for k in adam if k.startswith("g.")} == set(range(len(shapes)))
    logged = [json.loads(line)["images"] for line in
              (state_dir / "log.jsonl").read_text().splitlines()]
    assert logged and max(logged) <= state["images_seen"]  # nothing past the checkpoint
