"""PCA estimators: cov against scikit-learn, ipca, determinism, torchrun (gloo) = one process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

from ganspace.engine.model import default_pitch, random_model
from ganspace.errors import InputError
from ganspace.space import pca
from ganspace.space.directions import load_directions
from ganspace.space.estimators import CovarianceAccumulator, ipca_chunks, sign_normalise
from ganspace.space.pca import compute_directions, iter_latents, rank_slice

N = 300
TOP = 20  # leading components, well separated at this N


def latents(seed: int, start: int, stop: int, latent_size: int) -> np.ndarray:
    """All latents of samples ``start .. stop-1`` in one batch: float32 [stop - start, Z]."""
    parts = list(iter_latents(seed, start, stop, max(stop - start, 1), latent_size))
    return np.concatenate(parts) if parts else np.zeros((0, latent_size), np.float32)


@pytest.fixture(scope="module")
def activations(tiny_model) -> np.ndarray:
    """conv0 activations of the N samples of seed 0 at pitch 32 (faithful generator, NHWC)."""
    z = torch.from_numpy(latents(0, 0, N, tiny_model.latent_size))
    labels = tiny_model.labels(32, N)
    with torch.no_grad():
        act = tiny_model.generator.activations(z, labels, "conv0")
    return act.permute(0, 2, 3, 1).reshape(N, -1).double().numpy()


@pytest.fixture(scope="module")
def cov_all(tiny_model):
    return compute_directions(tiny_model, "conv0", N, seed=0, components=None, batch=64)


def _same_up_to_sign(a: np.ndarray, b: np.ndarray, tol: float) -> None:
    dots = np.abs(np.sum(a * b, axis=1))
    np.testing.assert_allclose(dots, 1.0, atol=tol)


def test_latent_stream_is_independent_of_batching():
    whole = latents(3, 0, 2500, 4)
    parts = np.concatenate(list(iter_latents(3, 0, 2500, 7, 4)))
    np.testing.assert_array_equal(parts, whole)
    np.testing.assert_array_equal(latents(3, 1000, 1100, 4), whole[1000:1100])
    assert not np.array_equal(latents(4, 0, 10, 4), whole[:10])
    assert whole.dtype == np.float32 and abs(whole.std() - 1) < 0.05
    with pytest.raises(InputError, match="seed"):
        latents(-1, 0, 1, 4)


def test_rank_slices_partition_the_samples():
    for samples, world in [(300, 2), (7, 3), (1, 2)]:
        bounds = [rank_slice(samples, r, world) for r in range(world)]
        assert bounds[0][0] == 0 and bounds[-1][1] == samples
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))


def test_cov_equals_sklearn_pca(tiny_model, cov_all, activations):
    ref = PCA(svd_solver="full").fit(activations)
    d = cov_all
    assert d.count == 256 and d.components.shape == (256, 2, 16, 8)
    np.testing.assert_allclose(d.stdev, np.sqrt(ref.explained_variance_[:256]), rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_allclose(d.var_ratio, ref.explained_variance_ratio_[:256], rtol=1e-4,
                               atol=1e-7)
    np.testing.assert_allclose(d.mean.reshape(-1), ref.mean_, atol=1e-5)
    comps = d.components.reshape(256, -1)
    _same_up_to_sign(comps[:TOP], ref.components_[:TOP], 1e-4)
    np.testing.assert_allclose(np.linalg.norm(comps, axis=1), 1.0, atol=1e-5)
    assert d.meta["total_variance"] == pytest.approx(activations.var(axis=0, ddof=1).sum(),
                                                     rel=1e-6)


def test_sign_convention_largest_entry_positive(cov_all):
    comps = cov_all.components.reshape(cov_all.count, -1)
    assert (comps[np.arange(len(comps)), np.abs(comps).argmax(axis=1)] > 0).all()
    flipped = sign_normalise(-comps.copy())
    np.testing.assert_array_equal(flipped, comps)


def test_pca_estimator_agrees_with_cov(tiny_model, cov_all):
    d = compute_directions(tiny_model, "conv0", N, seed=0, estimator="pca", components=64)
    assert d.count == 64 and d.meta["estimator"] == "pca"
    np.testing.assert_allclose(d.stdev, cov_all.stdev[:64], rtol=1e-4)
    np.testing.assert_allclose(d.mean, cov_all.mean, atol=1e-5)
    _same_up_to_sign(d.components.reshape(64, -1)[:TOP],
                     cov_all.components.reshape(256, -1)[:TOP], 1e-4)
    assert d.meta["total_variance"] == pytest.approx(cov_all.meta["total_variance"], rel=1e-5)


def test_ipca_full_rank_in_chunks_agrees_with_cov(tiny_model):
    # 600 samples, K = D = 256: partial_fit on chunks of 256 and 344 rows
    ipca = compute_directions(tiny_model, "conv0", 600, seed=2, estimator="ipca",
                              components=None, batch=100)
    cov = compute_directions(tiny_model, "conv0", 600, seed=2, components=None, batch=100)
    assert ipca.count == 256 and ipca.meta["estimator"] == "ipca"
    np.testing.assert_allclose(ipca.stdev[:TOP], cov.stdev[:TOP], rtol=1e-3)
    np.testing.assert_allclose(ipca.mean, cov.mean, atol=1e-5)
    _same_up_to_sign(ipca.components.reshape(256, -1)[:TOP],
                     cov.components.reshape(256, -1)[:TOP], 1e-3)
    np.testing.assert_allclose(ipca.var_ratio.sum(), 1.0, rtol=1e-4)


def test_ipca_chunks():
    assert ipca_chunks(1000, 256, 64) == [256, 256, 256, 232]
    assert ipca_chunks(1000, 256, 250) == [256, 256, 488]  # last 232 < K merged
    assert ipca_chunks(300, 512, 64) == [300]


def test_deterministic_and_batch_independent(tiny_model, cov_all):
    again = compute_directions(tiny_model, "conv0", N, seed=0, components=None, batch=64)
    np.testing.assert_array_equal(again.components, cov_all.components)
    np.testing.assert_array_equal(again.stdev, cov_all.stdev)
    other_batch = compute_directions(tiny_model, "conv0", N, seed=0, components=8, batch=300)
    np.testing.assert_allclose(other_batch.stdev, cov_all.stdev[:8], rtol=1e-5)
    np.testing.assert_allclose(other_batch.components, cov_all.components[:8], atol=1e-4)
    other_seed = compute_directions(tiny_model, "conv0", N, seed=1, components=8, batch=64)
    assert not np.allclose(other_seed.stdev, cov_all.stdev[:8])


def test_components_are_capped_at_the_rank_limit(tiny_model):
    assert compute_directions(tiny_model, "conv0", 10, components=512).count == 10
    assert compute_directions(tiny_model, "conv0", N).count == 256  # default 512 > D = 256


def test_meta_and_fingerprint(tiny_model, cov_all):
    m = cov_all.meta
    assert m["estimator"] == "cov" and m["samples"] == N and m["seed"] == 0
    assert m["pitch"] == 32 and m["components"] == 256
    assert cov_all.fingerprint == tiny_model.fingerprint and cov_all.layer == "conv0"


def test_other_layers_and_pitch(tiny_model, cov_all):
    d = compute_directions(tiny_model, "conv1", 64, seed=0, pitch=40, components=5, batch=32)
    assert d.layer == "conv1" and d.components.shape == (5, 2, 16, 8) and d.meta["pitch"] == 40
    assert (np.diff(d.stdev) <= 0).all()
    assert not np.allclose(d.stdev, cov_all.stdev[:5])
    e = compute_directions(tiny_model, "conv0_2", 64, seed=0, estimator="pca", components=5)
    assert e.components.shape == (5, 4, 32, 8) and e.mean.shape == (4, 32, 8)


def test_default_pitch():
    assert default_pitch(random_model().pitches) == 32
    assert default_pitch(list(range(60, 71))) == 65


def test_bad_requests(tiny_model):
    with pytest.raises(InputError, match="unknown layer"):
        compute_directions(tiny_model, "conv9", N)
    with pytest.raises(InputError, match="estimator"):
        compute_directions(tiny_model, "conv0", N, estimator="fbpca")
    with pytest.raises(InputError, match="samples must be >= 2"):
        compute_directions(tiny_model, "conv0", 1)
    with pytest.raises(InputError, match="components must be >= 1"):
        compute_directions(tiny_model, "conv0", N, components=0)
    with pytest.raises(InputError, match="pitch 20"):
        compute_directions(tiny_model, "conv0", N, pitch=20)
    with pytest.raises(InputError, match="GiB"):
        CovarianceAccumulator(40000, torch.device("cpu"))


def test_only_cov_runs_distributed(tiny_model, monkeypatch):
    monkeypatch.setattr(pca, "rank_and_size", lambda: (0, 2))
    with pytest.raises(InputError, match="use cov under torchrun"):
        compute_directions(tiny_model, "conv0", N, estimator="ipca")


def test_torchrun_two_gloo_ranks_equal_one_process(tiny_model_dir, tmp_path):
    exe = shutil.which("ganspacesynth")
    assert exe, "ganspacesynth is not installed (pip install -e .)"
    out = tmp_path / "two.safetensors"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", "--no-python", exe, "pca", str(tiny_model_dir), "--samples", str(N), "--seed",
           "0", "--components", "all", "--batch", "64", "--device", "cpu", "--dtype", "float32",
           "--no-progress", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    two = load_directions(out)
    from ganspace.formats import load_model

    one = compute_directions(load_model(tiny_model_dir, device="cpu"), "conv0", N, seed=0,
                             components=None, batch=64)
    assert two.meta["samples"] == N
    np.testing.assert_allclose(two.stdev, one.stdev, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(two.mean, one.mean, atol=1e-6)
    np.testing.assert_allclose(two.var_ratio, one.var_ratio, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(two.components[:TOP], one.components[:TOP], atol=1e-4)


def test_the_registry_is_the_one_list_of_estimators():
    from ganspace.cli import build_parser
    from ganspace.cli.legacy import build_parser as legacy_parser
    from ganspace.space.estimators import ESTIMATORS, names_text

    sub = next(a for a in build_parser()._actions if a.dest == "verb")
    choices = next(a.choices for a in sub.choices["pca"]._actions if a.dest == "estimator")
    assert list(choices) == list(ESTIMATORS) == ["cov", "ipca", "pca"]
    assert names_text() == "cov, ipca or pca"
    help_text = next(a.help for a in legacy_parser()._actions if a.dest == "estimator")
    assert help_text.startswith("cov (default), ipca or pca;")

