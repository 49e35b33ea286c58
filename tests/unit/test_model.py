"""The format table of load_model, random models, pitch descriptions, slerp (the model tests on
Magenta's fixture are in tests/parity/test_model_parity.py)."""

from __future__ import annotations

import numpy as np
import pytest

import ganspace
from ganspace import formats
from ganspace.engine.model import describe_pitches, random_model
from ganspace.errors import CheckpointError, InputError
from ganspace.formats import ModelFormat, load_model


def test_not_a_model_folder(tmp_path):
    with pytest.raises(CheckpointError, match="no such model folder"):
        load_model(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="not a model folder"):
        load_model(tmp_path)


def test_describe_pitches():
    assert describe_pitches([24, 25, 26, 40]) == "24-26, 40"
    assert describe_pitches([32]) == "32"


def test_slerp_matches_magenta_and_stays_finite():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(16), rng.standard_normal(16)
    omega = np.arccos(np.dot(a / np.linalg.norm(a), b / np.linalg.norm(b)))
    for t in (0.0, 0.3, 1.0):
        magenta_value = np.sin((1 - t) * omega) / np.sin(omega) * a + np.sin(t * omega) / np.sin(
            omega) * b
        np.testing.assert_allclose(ganspace.slerp(a, b, t), magenta_value, rtol=1e-12)
    for other in (a, 2 * a, -a, np.zeros(16)):
        out = ganspace.slerp(a, other, 0.25)
        assert np.isfinite(out).all()
        np.testing.assert_allclose(out, 0.75 * a + 0.25 * other, atol=1e-12)
    batch = ganspace.slerp(a, b, np.array([0.0, 0.5, 1.0]))
    assert batch.shape == (3, 16)
    np.testing.assert_allclose(batch[0], a, atol=1e-12)
    np.testing.assert_allclose(batch[2], b, atol=1e-12)
    assert ganspace.slerp(a.astype(np.float32), b.astype(np.float32), 0.5).dtype == np.float32


def test_a_format_is_one_table_entry(tmp_path, monkeypatch):
    """What docs/architecture.md's recipe promises: one ModelFormat entry and load_model (and
    so every verb) reads the format."""
    fake = ModelFormat("fake", "weights.fake for a fake model",
                       lambda folder: (folder / "weights.fake").is_file(),
                       lambda folder, device, precision: random_model(seed=7, device=device))
    monkeypatch.setattr(formats, "MODEL_FORMATS", (*formats.MODEL_FORMATS, fake))
    (tmp_path / "weights.fake").write_text("")
    assert load_model(tmp_path, device="cpu").fingerprint == random_model(seed=7).fingerprint
    (tmp_path / "weights.fake").unlink()
    with pytest.raises(CheckpointError, match=r"Magenta checkpoint, or weights.fake for a fake"):
        load_model(tmp_path)


def test_random_model():
    tiny = random_model()
    assert tiny.latent_size == 8 and tiny.pitches == list(range(24, 85))
    assert tiny.device.type == "cpu" and tiny.provenance == {"source": "random tiny"}
    assert random_model(seed=0).fingerprint == tiny.fingerprint != random_model(seed=1).fingerprint
    small = random_model(pitches=[40, 30], latent_size=4, progress=0.5)
    assert small.pitches == [30, 40] and small.latent_size == 4 and small.config.progress == 0.5
    with pytest.raises(InputError, match="unknown random model size 'huge'"):
        random_model("huge")

