"""Hallucinations: paths, envelope, exact clip layout, silent notes, limits, progress, cancel."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from ganspace.engine.latent import slerp
from ganspace.engine.model import random_model
from ganspace.errors import Cancelled, InputError
from ganspace.space.hallucinate import (
    MAX_SOUNDS,
    Envelope,
    Hallucination,
    assemble,
    clip_samples,
    coefficient_path,
    hallucinate_coefficients,
    hallucinate_z,
    z_path,
)
from ganspace.space.pca import compute_directions

SR = 16000
SHORT = Envelope(0.0, 0.05, 0.05, 0.05)


@pytest.fixture(scope="module")
def model():
    """A private tiny model with batch size 2, so progress is reported between batches."""
    m = random_model()
    m.batch_size = 2
    return m


@pytest.fixture(scope="module")
def directions(model):
    return compute_directions(model, "conv0", 200, seed=0, components=16, batch=100)


# ---- envelope ----------------------------------------------------------------------------------
def test_envelope_checks():
    Envelope(1.0, 1.0, 1.0, 1.0).check(4.0)  # exactly a note
    for bad, match in [(Envelope(1.0, 1.0, 1.0, 1.5), "longer than a note"),
                       (Envelope(-0.1, 0.1, 0.1, 0.1), "trim must be"),
                       (Envelope(0.0, float("nan"), 0.1, 0.1), "attack must be"),
                       (Envelope(0.0, 0.1, float("inf"), 0.1), "sustain must be"),
                       (Envelope(0.0, 0.1, 0.1, "x"), "release must be")]:  # type: ignore[arg-type]
        with pytest.raises(InputError, match=match):
            bad.check(4.0)


def test_envelope_gains():
    g = Envelope(0.25, 0.5, 0.25, 0.5).gains(8)  # 2 + 4 + 2 + 4 samples
    np.testing.assert_allclose(g, [0, 0, 0, 0.25, 0.5, 0.75, 1, 1, 0.75, 0.5, 0.25, 0])
    assert len(Envelope(0.0, 0.0, 0.0, 0.0).gains(SR)) == 0


# ---- paths -------------------------------------------------------------------------------------
def test_z_path_counts_and_no_repeated_keypoints():
    kp = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    path = z_path(kp, 2)
    assert path.shape == (3 + 2 * 2, 8) and path.dtype == np.float32
    np.testing.assert_array_equal(path[[0, 3, 6]], kp)
    np.testing.assert_allclose(path[1], slerp(kp[0], kp[1], 1 / 3), rtol=1e-6)
    np.testing.assert_allclose(path[5], slerp(kp[1], kp[2], 2 / 3), rtol=1e-6)
    assert len({row.tobytes() for row in path}) == len(path)
    np.testing.assert_array_equal(z_path(kp, 0), kp)
    assert z_path(kp[:1], 5).shape == (1, 8)
    with pytest.raises(InputError, match="steps must be"):
        z_path(kp, -1)
    with pytest.raises(InputError, match=f"at most {MAX_SOUNDS}"):
        z_path(kp, 5000)


def test_coefficient_path_counts_and_values():
    st = np.array([[0.0, 0.0], [4.0, -4.0], [0.0, 8.0]], np.float32)
    path = coefficient_path(st, 4)
    assert path.shape == (3 + 2 * 3, 2)
    np.testing.assert_allclose(path[:5, 0], [0, 1, 2, 3, 4])
    np.testing.assert_allclose(path[4:, 1], [-4, -1, 2, 5, 8])
    for k in (0, 1):
        np.testing.assert_array_equal(coefficient_path(st, k), st)
    assert coefficient_path(st, 2).shape == (5, 2)
    with pytest.raises(InputError, match="subdivisions must be"):
        coefficient_path(st, -1)
    with pytest.raises(InputError, match="NaN"):
        coefficient_path(st * np.nan, 2)


# ---- assembly ----------------------------------------------------------------------------------
@pytest.mark.parametrize("count,spacing,env", [
    (3, 0.5, Envelope(0.0, 0.1, 0.2, 0.1)),
    (5, 0.123456, Envelope(0.01234, 0.3, 0.0001, 0.77777)),
    (4, 0.0, Envelope(0.1, 0.1, 0.1, 0.1)),
    (1, 1.0, Envelope(0.0, 0.0, 4.0, 0.0)),
    (7, 2.5, Envelope(0.0, 0.1, 0.0, 0.1)),  # gaps of silence between sounds
])
def test_clip_length_onsets_and_peak(count, spacing, env):
    notes = np.random.default_rng(count).standard_normal((count, 64000)).astype(np.float32)
    clip, onsets = assemble(notes, SR, spacing, env)
    assert clip.dtype == np.float32
    assert len(clip) == round(((count - 1) * spacing + env.total) * SR)
    assert len(clip) == clip_samples(count, SR, spacing, env)
    np.testing.assert_allclose(onsets, np.arange(count) * spacing)
    assert np.abs(clip).max() == pytest.approx(0.5, rel=1e-6)


def test_sounds_start_at_their_onsets():
    env = Envelope(0.0, 0.0, 0.1, 0.0)  # rectangular 1600 samples
    notes = np.ones((3, 64000), np.float32) * np.array([[1.0], [-2.0], [0.5]], np.float32)
    clip, _ = assemble(notes, SR, 0.25, env)
    assert len(clip) == 2 * 4000 + 1600
    for i, sign in enumerate((1, -1, 1)):  # each normalised to |peak| 1, sign kept, mix to 0.5
        seg = clip[i * 4000 : i * 4000 + 1600]
        np.testing.assert_allclose(seg, 0.5 * sign)
        assert not clip[i * 4000 + 1600 : (i + 1) * 4000].any()


def test_trim_is_silence_and_overlap_adds():
    env = Envelope(0.5, 0.0, 0.5, 0.0)
    notes = np.ones((2, 64000), np.float32)
    clip, _ = assemble(notes, SR, 0.25, env)  # second sound overlaps the first's sustain
    assert not clip[:8000].any()
    np.testing.assert_allclose(clip[8000:12000], 0.25)
    np.testing.assert_allclose(clip[12000:16000], 0.5)
    np.testing.assert_allclose(clip[16000:20000], 0.25)


def test_silent_notes_never_give_nan():
    notes = np.zeros((3, 64000), np.float32)
    notes[1] = np.sin(np.arange(64000) / 10.0)
    clip, _ = assemble(notes, SR, 0.5, Envelope(0.0, 0.1, 0.1, 0.1))
    assert np.isfinite(clip).all() and np.abs(clip).max() == pytest.approx(0.5)
    assert not clip[:8000].any()  # the silent first note stays silent
    silent, _ = assemble(np.zeros((2, 64000), np.float32), SR, 0.1, SHORT)
    assert np.isfinite(silent).all() and not silent.any()


def test_assemble_refusals():
    notes = np.zeros((2, 64000), np.float32)
    with pytest.raises(InputError, match="longer than a note"):
        assemble(notes, SR, 0.1, Envelope(1.0, 1.0, 1.0, 1.1))
    with pytest.raises(InputError, match="spacing must be"):
        assemble(notes, SR, -0.1, SHORT)
    with pytest.raises(InputError, match="sounds must be"):
        assemble(np.zeros((0, 64000), np.float32), SR, 0.1, SHORT)
    with pytest.raises(InputError, match="at most 3600"):
        assemble(notes, SR, 5000.0, SHORT)


# ---- generation --------------------------------------------------------------------------------
def test_hallucinate_z_counts_length_and_progress(model):
    calls = []
    kp = model.random_z(2, seed=1)
    h = hallucinate_z(model, kp, 1, 32, SHORT, 0.1,
                      progress=lambda done, total: calls.append((done, total)))
    assert isinstance(h, Hallucination) and h.count == 3 and h.sample_rate == SR
    assert len(h.clip) == round((2 * 0.1 + 0.15) * SR)
    assert h.seconds == pytest.approx(0.35)
    np.testing.assert_allclose(h.onsets, [0, 0.1, 0.2])
    assert calls == [(2, 3), (3, 3)]  # batch size 2
    assert np.abs(h.clip).max() == pytest.approx(0.5, rel=1e-6)
    # the same notes assembled by hand give the same clip
    notes = model.generate(z_path(kp, 1), 32)
    clip, _ = assemble(notes, SR, 0.1, SHORT)
    np.testing.assert_allclose(h.clip, clip, atol=1e-6)


def test_hallucinate_z_with_directions(model, directions):
    kp = model.random_z(1, seed=2)
    plain = hallucinate_z(model, kp, 0, 32, SHORT, 0.0)
    same = hallucinate_z(model, kp, 0, 32, SHORT, 0.0, directions, [0.0, 0.0])
    np.testing.assert_array_equal(same.clip, plain.clip)
    moved = hallucinate_z(model, kp, 0, 32, SHORT, 0.0, directions, [3.0])
    assert np.abs(moved.clip - plain.clip).max() > 1e-3
    with pytest.raises(InputError, match="coefficients need directions"):
        hallucinate_z(model, kp, 0, 32, SHORT, 0.0, None, [1.0])
    with pytest.raises(InputError, match="hold only 16"):
        hallucinate_z(model, kp, 0, 32, SHORT, 0.0, directions, np.zeros(17))
    with pytest.raises(InputError, match="not this one"):
        hallucinate_z(random_model(seed=3), kp, 0, 32, SHORT, 0.0, directions, [1.0])


def test_hallucinate_coefficients(model, directions):
    calls = []
    steps = np.array([[0.0, 0.0], [2.0, -1.0]], np.float32)
    h = hallucinate_coefficients(model, directions, steps, 3, 32, SHORT, 0.05,
                                 progress=lambda d, t: calls.append((d, t)))
    assert h.count == 4 and calls == [(2, 4), (4, 4)]
    assert len(h.clip) == round((3 * 0.05 + 0.15) * SR)
    assert np.isfinite(h.clip).all()
    # the first 0.05 s hold only the first sound: noz at zero coefficients (the mean activation)
    first = model.generate(None, 32, directions, np.zeros((1, 2), np.float32))
    ref, _ = assemble(first, SR, 0.0, SHORT)
    a, b = h.clip[:800].astype(np.float64), ref[:800].astype(np.float64)
    assert a @ b / (np.linalg.norm(a) * np.linalg.norm(b)) > 0.9999
    with pytest.raises(InputError, match="hold only 16"):
        hallucinate_coefficients(model, directions, np.zeros((2, 17)), 2, 32, SHORT, 0.1)
    with pytest.raises(InputError, match="steps must be"):
        hallucinate_coefficients(model, directions, np.zeros(3), 2, 32, SHORT, 0.1)


def test_requests_refused_before_any_work(model, directions):
    calls = []

    def progress(done: int, total: int) -> None:
        calls.append(done)

    kp = model.random_z(2, seed=0)
    bad = [
        lambda: hallucinate_z(model, kp, 1, 32, Envelope(2, 2, 2, 2), 0.1, progress=progress),
        lambda: hallucinate_z(model, kp, 1, 32, SHORT, -1.0, progress=progress),
        lambda: hallucinate_z(model, kp, 1, 19, SHORT, 0.1, progress=progress),
        lambda: hallucinate_z(model, kp, 10_000, 32, SHORT, 0.1, progress=progress),
        lambda: hallucinate_z(model, kp[:, :3], 1, 32, SHORT, 0.1, progress=progress),
        lambda: hallucinate_z(model, kp, 2000, 32, SHORT, 2.0, progress=progress),  # > 1 h
        lambda: hallucinate_coefficients(model, directions, np.zeros((5000, 2)), 0, 32, SHORT,
                                         0.1, progress=progress),
        lambda: hallucinate_coefficients(model, directions, np.zeros((2, 2)), 2, 32,
                                         Envelope(0, 0, 0, 5), 0.1, progress=progress),
    ]
    for call in bad:
        with pytest.raises(InputError):
            call()
    assert calls == []


def test_cancel(model):
    kp = model.random_z(3, seed=0)
    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled, match="after 0 of 5"):
        hallucinate_z(model, kp, 1, 32, SHORT, 0.1, cancel=stop)
    stop = threading.Event()
    calls = []

    def progress(done: int, total: int) -> None:
        calls.append(done)
        stop.set()  # cancel while the job runs

    with pytest.raises(Cancelled, match="after 2 of 5"):
        hallucinate_z(model, kp, 1, 32, SHORT, 0.1, progress=progress, cancel=stop)
    assert calls == [2]
