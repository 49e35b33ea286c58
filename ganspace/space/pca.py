"""PCA of one generator layer's activations: the GANSpace directions.

Sampling: ``z ~ N(0, 1)`` (float32, ``latent_size`` wide) at one fixed pitch (32 when the model
knows it, else its middle pitch). Sample ``i`` of seed ``s`` is row ``i % LATENT_CHUNK`` of the
block ``numpy.random.default_rng([s, i // LATENT_CHUNK]).standard_normal((LATENT_CHUNK, Z))``, so
the samples do not depend on the batch size, and each ``torchrun`` rank can draw its own disjoint
slice of the same N samples.

Estimators:

- ``cov`` (default): activations are streamed in batches on the model's device; the sum and the
  sum of outer products are accumulated in float64 (all-reduced across ranks under
  ``torch.distributed``), the covariance (ddof 1, like scikit-learn's ``explained_variance_``) is
  eigendecomposed once with ``torch.linalg.eigh`` in float64. Memory: ``D x D`` float64 (512 MiB
  for ``conv0`` of the published model, D = 8192); time: linear in N plus one eigendecomposition.
- ``ipca``: scikit-learn ``IncrementalPCA`` in chunks of ``max(batch, K)`` rows (what the original
  ``gansynth_ganspace`` did); single process only.
- ``pca``: scikit-learn ``PCA`` (full SVD) on all N activations held in memory; single process only.

Every estimator returns components sorted by decreasing variance, unit L2 norm, with the sign
convention of :mod:`ganspace.space.directions` (largest-magnitude entry positive).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from ganspace.distrib import all_reduce_sum, rank_and_size
from ganspace.engine.model import GANSynthModel, default_pitch
from ganspace.errors import InputError
from ganspace.space.directions import Directions

log = logging.getLogger(__name__)

ESTIMATORS = ("cov", "ipca", "pca")
DEFAULT_COMPONENTS = 512
LATENT_CHUNK = 1024
MAX_COV_BYTES = 8 * 2**30
"""Largest float64 ``D x D`` accumulator ``cov`` accepts (D = 32768, e.g. ``conv0_2``)."""
MAX_PCA_BYTES = 4 * 2**30
"""Largest float32 ``N x D`` activation matrix the in-memory ``pca`` estimator accepts."""


@dataclass
class PCAStats:
    """Result of one estimator, flattened (D = H * W * C, NHWC order).

    Attributes:
        components: float32 [K, D], unit norm, descending variance, sign-normalised.
        stdev: float32 [K], sqrt of the variance (ddof 1) along each component.
        var_ratio: float32 [K], variance / total variance.
        mean: float32 [D], mean activation.
        total_variance: sum of the per-value variances (ddof 1) = sum of all eigenvalues.
        samples: N.
    """

    components: np.ndarray
    stdev: np.ndarray
    var_ratio: np.ndarray
    mean: np.ndarray
    total_variance: float
    samples: int


# ---- sampling ----------------------------------------------------------------------------------
def iter_latents(seed: int, start: int, stop: int, batch: int,
                 latent_size: int) -> Iterator[np.ndarray]:
    """Latents of samples ``start .. stop-1`` of the seeded stream (see the module docstring), in
    batches of ``batch`` rows (the last may be shorter): float32 [b, latent_size] each."""
    if seed < 0:
        raise InputError(f"seed must be >= 0, got {seed}")
    chunk = start // LATENT_CHUNK
    skip = start - chunk * LATENT_CHUNK
    buf = np.empty((0, latent_size), dtype=np.float32)
    pos = start
    while pos < stop:
        n = min(batch, stop - pos)
        while len(buf) < n:
            block = np.random.default_rng([seed, chunk]).standard_normal(
                (LATENT_CHUNK, latent_size), dtype=np.float32)
            buf = np.concatenate([buf, block[skip:]])
            skip = 0
            chunk += 1
        yield buf[:n]
        buf = buf[n:]
        pos += n


def latents(seed: int, start: int, stop: int, latent_size: int) -> np.ndarray:
    """All latents of samples ``start .. stop-1``: float32 [stop - start, latent_size]."""
    parts = list(iter_latents(seed, start, stop, max(stop - start, 1), latent_size))
    return np.concatenate(parts) if parts else np.zeros((0, latent_size), np.float32)


def iter_activations(model: GANSynthModel, layer: str, pitch: int, seed: int, start: int,
                     stop: int, batch: int) -> Iterator[Tensor]:
    """Activations of ``layer`` for samples ``start .. stop-1`` at ``pitch``, batch by batch:
    float32 [b, H*W*C] on ``model.device``, NHWC order (the folded inference generator stops
    after ``layer``; call inside ``torch.inference_mode()``)."""
    model.label_for(pitch)
    for z in iter_latents(seed, start, stop, batch, model.latent_size):
        yield model.activations(z, pitch, layer).reshape(len(z), -1)


def rank_slice(samples: int, rank: int, world: int) -> tuple[int, int]:
    """Contiguous share ``[start, stop)`` of ``samples`` for one of ``world`` ranks."""
    return samples * rank // world, samples * (rank + 1) // world


# ---- estimators --------------------------------------------------------------------------------
def sign_normalise(components: np.ndarray) -> np.ndarray:
    """Flip each row of [K, D] so that its entry of largest magnitude is positive (in place)."""
    idx = np.abs(components).argmax(axis=1)
    signs = np.sign(components[np.arange(len(components)), idx])
    signs[signs == 0] = 1
    components *= signs[:, None].astype(components.dtype)
    return components


class CovarianceAccumulator:
    """Streaming float64 sums for the covariance of rows ``x`` [b, D].

    Holds ``sum`` [D] and ``outer = sum x x^T`` [D, D] on ``device``; :meth:`all_reduce` adds them
    up over the ranks of ``torch.distributed``; :meth:`decompose` turns them into principal
    components (and frees the accumulator).
    """

    def __init__(self, dim: int, device: torch.device) -> None:
        need = dim * dim * 8
        if need > MAX_COV_BYTES:
            raise InputError(
                f"the cov estimator needs a {dim}x{dim} float64 matrix ({need / 2**30:.0f} GiB) "
                f"for this layer, more than the {MAX_COV_BYTES / 2**30:.0f} GiB limit; pick a "
                "smaller layer or use --estimator ipca with --components K"
            )
        self.dim = dim
        self.n = 0
        self.sum = torch.zeros(dim, dtype=torch.float64, device=device)
        self.outer: Tensor | None = torch.zeros((dim, dim), dtype=torch.float64, device=device)

    def update(self, x: Tensor) -> None:
        """Add rows x [b, D] (any float type, on the accumulator's device)."""
        assert self.outer is not None, "accumulator already decomposed"
        x64 = x.to(torch.float64)
        self.sum += x64.sum(dim=0)
        self.outer.addmm_(x64.T, x64)
        self.n += x.shape[0]

    def all_reduce(self) -> None:
        """Sum the statistics over all ranks (no-op without ``torch.distributed``)."""
        if rank_and_size()[1] == 1:
            return
        assert self.outer is not None, "accumulator already decomposed"
        n = torch.tensor([self.n], dtype=torch.float64, device=self.sum.device)
        all_reduce_sum(n, self.sum, self.outer)
        self.n = int(n.item())

    def decompose(self, k: int) -> PCAStats:
        """Top ``k`` principal components of the accumulated rows (consumes the accumulator).

        The covariance ``(outer - n mean mean^T) / (n - 1)`` is built in place and decomposed with
        ``torch.linalg.eigh`` in float64; negative round-off eigenvalues are clamped to 0.
        """
        assert self.outer is not None, "accumulator already decomposed"
        n = self.n
        if n < 2:
            raise InputError(f"PCA needs at least 2 samples, got {n}")
        if not 1 <= k <= self.dim:
            raise InputError(f"components must be 1..{self.dim}, got {k}")
        mean = self.sum / n
        cov = self.outer
        self.outer = None
        cov.addr_(mean, mean, alpha=-float(n)).div_(n - 1)
        total = float(cov.diagonal().sum().item())
        evals, evecs = torch.linalg.eigh(cov)  # ascending; cov's storage is freed below
        del cov
        evals = evals.flip(0)[:k].clamp_min(0.0)
        comps = evecs.flip(1)[:, :k].T.contiguous()
        del evecs
        comps = sign_normalise(comps.cpu().numpy()).astype(np.float32)
        var = evals.cpu().numpy()
        return PCAStats(
            components=comps,
            stdev=np.sqrt(var).astype(np.float32),
            var_ratio=(var / total if total > 0 else np.zeros_like(var)).astype(np.float32),
            mean=mean.cpu().numpy().astype(np.float32),
            total_variance=total,
            samples=n,
        )


def fit_cov(batches: Iterable[Tensor], dim: int, k: int, device: torch.device) -> PCAStats:
    """The ``cov`` estimator over activation batches [b, D] (all-reduced under distributed)."""
    acc = CovarianceAccumulator(dim, device)
    for x in batches:
        acc.update(x.to(device))
    acc.all_reduce()
    log.info("eigendecomposing the %dx%d covariance of %d samples", dim, dim, acc.n)
    return acc.decompose(k)


def ipca_chunks(samples: int, chunk: int, k: int) -> list[int]:
    """Row counts of the ``partial_fit`` calls: ``chunk`` each, a last remainder smaller than
    ``k`` merged into the previous chunk (IncrementalPCA needs >= K rows per call)."""
    sizes = [chunk] * (samples // chunk)
    rest = samples - chunk * len(sizes)
    if rest:
        if rest >= k or not sizes:
            sizes.append(rest)
        else:
            sizes[-1] += rest
    return sizes


def fit_ipca(batches: Iterable[Tensor | np.ndarray], samples: int, k: int, chunk: int,
             chunk_seconds: list[float] | None = None) -> PCAStats:
    """scikit-learn ``IncrementalPCA(n_components=k)`` over the rows of ``batches`` (float32),
    ``partial_fit`` on chunks of ``max(chunk, k)`` rows (see :func:`ipca_chunks`); the duration
    of each ``partial_fit`` is appended to ``chunk_seconds`` when given."""
    from sklearn.decomposition import IncrementalPCA

    if samples < max(k, 2):
        raise InputError(f"ipca with {k} components needs at least {max(k, 2)} samples, "
                         f"got {samples}")
    sizes = ipca_chunks(samples, max(chunk, k), k)
    ipca = IncrementalPCA(n_components=k)
    pending: list[np.ndarray] = []
    have = 0
    for x in batches:
        arr = x.cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
        pending.append(arr.astype(np.float32, copy=False))
        have += len(arr)
        while sizes and have >= sizes[0]:
            rows = np.concatenate(pending)
            t0 = time.perf_counter()
            ipca.partial_fit(rows[: sizes[0]])
            if chunk_seconds is not None:
                chunk_seconds.append(time.perf_counter() - t0)
            pending = [rows[sizes[0]:]]
            have -= sizes.pop(0)
    if sizes or have:
        raise InputError(f"ipca expected {samples} samples but got a different number")
    n = int(ipca.n_samples_seen_)
    return _sklearn_stats(ipca, float(ipca.var_.sum()) * n / (n - 1), n)


def _sklearn_stats(est: Any, total_variance: float, samples: int) -> PCAStats:
    """:class:`PCAStats` of a fitted scikit-learn PCA or IncrementalPCA."""
    return PCAStats(
        components=sign_normalise(est.components_.astype(np.float32)),
        stdev=np.sqrt(np.maximum(est.explained_variance_, 0)).astype(np.float32),
        var_ratio=est.explained_variance_ratio_.astype(np.float32),
        mean=est.mean_.astype(np.float32),
        total_variance=total_variance,
        samples=samples,
    )


def fit_pca(batches: Iterable[Tensor | np.ndarray], samples: int, dim: int,
            k: int) -> PCAStats:
    """scikit-learn ``PCA(n_components=k, svd_solver="full")`` on all rows held in memory."""
    from sklearn.decomposition import PCA

    need = samples * dim * 4
    if need > MAX_PCA_BYTES:
        raise InputError(
            f"the pca estimator holds all {samples}x{dim} activations in memory "
            f"({need / 2**30:.1f} GiB, limit {MAX_PCA_BYTES / 2**30:.0f} GiB); use --estimator cov"
        )
    x = np.concatenate([b.cpu().numpy() if isinstance(b, Tensor) else np.asarray(b)
                        for b in batches]).astype(np.float32, copy=False)
    if len(x) < 2:
        raise InputError(f"PCA needs at least 2 samples, got {len(x)}")
    pca = PCA(n_components=k, svd_solver="full").fit(x)
    return _sklearn_stats(pca, float(x.astype(np.float64).var(axis=0, ddof=1).sum()), len(x))


# ---- the whole job -----------------------------------------------------------------------------
def resolve_components(components: int | None, samples: int, dim: int) -> int:
    """K actually kept: at most ``components`` and at most ``min(N, D)`` (the rank limit, as in
    scikit-learn); ``None`` means all, ``min(N, D)``."""
    most = min(samples, dim)
    if components is None:
        return most
    if components < 1:
        raise InputError(f"components must be >= 1, got {components}")
    return min(components, most)


@torch.inference_mode()
def compute_directions(
    model: GANSynthModel,
    layer: str,
    samples: int,
    seed: int = 0,
    pitch: int | None = None,
    estimator: str = "cov",
    components: int | None = DEFAULT_COMPONENTS,
    batch: int = 256,
    progress: bool = False,
) -> Directions:
    """GANSpace directions of ``layer`` from ``samples`` random latents.

    Args:
        model: the generator (activations are computed on ``model.device``).
        layer: layer name (``model.layer_names()``).
        samples: N, the number of random latents (>= 2).
        seed: seed of the latent stream (>= 0); equal arguments give equal directions.
        pitch: MIDI pitch of every sample; None -> :func:`default_pitch`.
        estimator: ``cov``, ``ipca`` or ``pca`` (see the module docstring).
        components: keep at most K components (None: all); never more than ``min(N, D)``.
        batch: latents per forward pass (also the IPCA chunk, raised to at least K).
        progress: show a tqdm bar (rank 0 only, on a terminal).
    Returns:
        :class:`Directions` with the model's fingerprint and the job in ``meta``. Under
        ``torch.distributed`` (``cov`` only) every rank computes its slice of the N samples and
        returns the same directions.
    """
    if estimator not in ESTIMATORS:
        raise InputError(f"estimator must be one of {', '.join(ESTIMATORS)}, got {estimator!r}")
    if samples < 2:
        raise InputError(f"samples must be >= 2, got {samples}")
    if batch < 1:
        raise InputError(f"batch must be >= 1, got {batch}")
    if seed < 0:
        raise InputError(f"seed must be >= 0, got {seed}")
    shape = model.layer_shape(layer)
    dim = int(np.prod(shape))
    pitch = default_pitch(model.pitches) if pitch is None else pitch
    model.label_for(pitch)
    k = resolve_components(components, samples, dim)
    rank, size = rank_and_size()
    if size > 1 and estimator != "cov":
        raise InputError(f"estimator {estimator} runs in one process; use cov under torchrun")
    start, stop = rank_slice(samples, rank, size)
    # disable=None: tqdm shows the bar only on a terminal
    with tqdm(total=stop - start, unit="z", desc=f"pca {layer}",
              disable=True if not progress or rank != 0 else None) as bar:
        def batches() -> Iterator[Tensor]:
            for x in iter_activations(model, layer, pitch, seed, start, stop, batch):
                yield x
                bar.update(len(x))
            bar.close()  # before the decomposition, so the bar times the sampling only

        if estimator == "cov":
            stats = fit_cov(batches(), dim, k, model.device)
        elif estimator == "ipca":
            stats = fit_ipca(batches(), samples, k, batch)
        else:
            stats = fit_pca(batches(), samples, dim, k)
    meta: dict[str, Any] = {
        "estimator": estimator,
        "samples": samples,
        "seed": seed,
        "pitch": int(pitch),
        "components": k,
        "total_variance": stats.total_variance,
        "latent_stream": f"numpy default_rng([seed, chunk]) chunks of {LATENT_CHUNK}",
        "model_provenance": model.provenance,
    }
    return directions_from_stats(stats, layer, shape, model.fingerprint, meta)


def directions_from_stats(stats: PCAStats, layer: str, shape: tuple[int, int, int],
                          fingerprint: str | None, meta: dict[str, Any]) -> Directions:
    """Wrap flattened statistics as :class:`Directions` of a layer of shape (H, W, C)."""
    k = len(stats.components)
    return Directions(layer, stats.components.reshape(k, *shape), stats.stdev, stats.var_ratio,
                      stats.mean.reshape(shape), fingerprint, meta)


# ---- benchmark ---------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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
    import tempfile
    from pathlib import Path

    from ganspace.space.directions import load_directions, save_directions

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
    _sync(model.device)
    t0 = time.perf_counter()
    for x in chunks():
        acc.update(x.to(model.device))
    _sync(model.device)
    t1 = time.perf_counter()
    cov = acc.decompose(k_all)
    _sync(model.device)
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
    y32, y16 = (fast(zt, labels, edit=(layer, _adder(off, shape))) for off in offsets)
    faithful = model.generator(zt, labels, edit=(layer, _adder(offsets[0], shape)))
    out["float16_output_rel_l2"] = _rel(y16, y32)
    out["float32_rounding_rel_l2"] = _rel(faithful, y32)
    step = torch.from_numpy(6 / 128 * d.stdev[0] * d.components[0].reshape(-1)).to(model.device)
    moved = model.fast_generator(zt, labels, edit=(layer, _adder(offsets[0] + step, shape)))
    out["slider_step_rel_l2"] = _rel(moved, y32)
    return out


def _rel(x: Tensor, ref: Tensor, dim: int | None = None) -> float:
    """Largest relative L2 error ``|x - ref| / |ref|`` (over rows when ``dim`` is given)."""
    if dim is None:
        return float((x - ref).norm() / ref.norm())
    return float(((x - ref).norm(dim=dim) / ref.norm(dim=dim)).max())


def _adder(offset: Tensor, shape: tuple[int, int, int]) -> Callable[[Tensor], Tensor]:
    """Layer edit adding ``offset`` [B, H*W*C] (NHWC order) to an activation [B, C, H, W]."""
    h, w, c = shape
    return lambda act: act + offset.view(-1, h, w, c).permute(0, 3, 1, 2)
