"""``ganspacesynth bench-pca``: the ``cov`` estimator against scikit-learn's IncrementalPCA on the
same activations, and what float16 storage of the directions changes."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ganspace.engine.benchmark import synchronize
from ganspace.engine.model import GANSynthModel, default_pitch, offset_edit
from ganspace.space.directions import load_directions, save_directions
from ganspace.space.estimators import CovarianceAccumulator, PCAStats, fit_ipca
from ganspace.space.pca import (
    DEFAULT_COMPONENTS,
    directions_from_stats,
    iter_activations,
    resolve_components,
)


@torch.inference_mode()
def bench_pca(model: GANSynthModel, layer: str, samples: int, seed: int = 0, batch: int = 256,
              compare_ipca: bool = False, ipca_components: int | None = None) -> dict[str, Any]:
    """Time ``cov`` (on ``model.device``) and, optionally, scikit-learn IPCA (CPU) on the same
    activations, generated once beforehand and held in memory (float32 [N, D] on the CPU).

    Returns a JSON-ready dict: ``generate_s`` (activation generation), ``cov_s`` =
    ``cov_accumulate_s`` (float64 sums from the in-memory activations, host-to-device copies
    included) + ``cov_decompose_s`` (covariance and full ``eigh``), ``ipca_s`` and
    ``ipca_components`` (K, default full rank ``min(N, D)``), ``ipca_chunk_s`` (seconds of each
    ``partial_fit``), ``speedup`` (ipca_s / cov_s), ``stdev_rel_diff`` (largest relative
    difference of the leading 16 standard deviations between the two), the sizes in bytes of a
    K = 512 directions file stored as float16 and float32 (``file_bytes``), and what float16
    storage changes in a z-mode edit of 4 notes with coefficients uniform in [-3, 3]:
    ``float16_offset_rel_err`` (largest relative L2 error of the layer offset) and
    ``float16_output_rel_l2`` (relative L2 difference of the generator outputs), next to
    ``float32_rounding_rel_l2``, the difference between the faithful and the folded generator on
    the same float32 edit (the rounding noise generation already has), and
    ``slider_step_rel_l2``, the output change when the first coefficient moves by 6/128
    standard deviations (one pixel of a 128-pixel -3..3 Pd slider).
    """
    shape = model.layer_shape(layer)
    dim = int(np.prod(shape))
    pitch = default_pitch(model.pitches)
    t0 = time.perf_counter()
    acts = np.empty((samples, dim), dtype=np.float32)
    pos = 0
    for x in iter_activations(model, layer, pitch, seed, 0, samples, batch):
        acts[pos : pos + len(x)] = x.cpu().numpy()
        pos += len(x)
    out: dict[str, Any] = {
        "layer": layer, "dim": dim, "samples": samples, "batch": batch,
        "device": str(model.device), "threads": torch.get_num_threads(),
        "generate_s": round(time.perf_counter() - t0, 3),
    }
    k_all = resolve_components(None, samples, dim)

    def chunks() -> Iterator[Tensor]:
        for s in range(0, samples, batch):
            yield torch.from_numpy(acts[s : s + batch])

    acc = CovarianceAccumulator(dim, model.device)
    synchronize(model.device)
    t0 = time.perf_counter()
    for x in chunks():
        acc.update(x.to(model.device))
    synchronize(model.device)
    t1 = time.perf_counter()
    cov = acc.decompose(k_all)
    synchronize(model.device)
    t2 = time.perf_counter()
    cov_s = t2 - t0
    out.update(cov_s=round(cov_s, 3), cov_accumulate_s=round(t1 - t0, 3),
               cov_decompose_s=round(t2 - t1, 3))
    if compare_ipca:
        k = resolve_components(ipca_components, samples, dim)
        chunk_s: list[float] = []
        t0 = time.perf_counter()
        ipca = fit_ipca(chunks(), samples, k, batch, chunk_s)
        ipca_s = time.perf_counter() - t0
        top = min(16, k)
        rel = np.abs(ipca.stdev[:top] - cov.stdev[:top]) / np.maximum(cov.stdev[:top], 1e-12)
        out.update(ipca_components=k, ipca_s=round(ipca_s, 3),
                   ipca_chunk_s=[round(t, 3) for t in chunk_s],
                   speedup=round(ipca_s / cov_s, 2), stdev_rel_diff=float(rel.max()))
    k512 = min(DEFAULT_COMPONENTS, k_all)
    small = PCAStats(cov.components[:k512], cov.stdev[:k512], cov.var_ratio[:k512], cov.mean,
                     cov.total_variance, samples)
    d = directions_from_stats(small, layer, shape, model.fingerprint, {"estimator": "cov"})
    with tempfile.TemporaryDirectory() as tmp:
        out["file_components"] = k512
        out["file_bytes"] = {
            dt: save_directions(d, Path(tmp) / f"{dt}.safetensors", dt).stat().st_size
            for dt in ("float16", "float32")
        }
        d16 = load_directions(Path(tmp) / "float16.safetensors")
    c = np.random.default_rng(0).uniform(-3, 3, (4, k512)).astype(np.float32)
    offsets = [torch.from_numpy((c * x.stdev) @ x.components.reshape(k512, -1)).to(model.device)
               for x in (d, d16)]
    out["float16_offset_rel_err"] = _rel(offsets[1], offsets[0], dim=1)
    zt = torch.from_numpy(model.random_z(4, seed=0)).to(model.device)
    labels = model.labels(pitch, 4)
    fast = model.fast_generator
    y32, y16 = (fast(zt, labels, edit=(layer, offset_edit(off, shape))) for off in offsets)
    faithful = model.generator(zt, labels, edit=(layer, offset_edit(offsets[0], shape)))
    out["float16_output_rel_l2"] = _rel(y16, y32)
    out["float32_rounding_rel_l2"] = _rel(faithful, y32)
    step = torch.from_numpy(6 / 128 * d.stdev[0] * d.components[0].reshape(-1)).to(model.device)
    moved = model.fast_generator(zt, labels, edit=(layer, offset_edit(offsets[0] + step, shape)))
    out["slider_step_rel_l2"] = _rel(moved, y32)
    return out


def _rel(x: Tensor, ref: Tensor, dim: int | None = None) -> float:
    """Largest relative L2 error ``|x - ref| / |ref|`` (over rows when ``dim`` is given)."""
    if dim is None:
        return float((x - ref).norm() / ref.norm())
    return float(((x - ref).norm(dim=dim) / ref.norm(dim=dim)).max())
