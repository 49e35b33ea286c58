"""PCA estimators and their registry, :data:`ESTIMATORS` (the one list of estimator names: the
``pca`` verb's choices, the ``gansynth_ganspace`` messages and :func:`~ganspace.space.pca.
compute_directions` all read it).

- ``cov`` (default): activations are streamed in batches on the model's device; the sum and the
  sum of outer products are accumulated in float64 (all-reduced across ranks under
  ``torch.distributed``), the covariance (ddof 1, like scikit-learn's ``explained_variance_``) is
  eigendecomposed once with ``torch.linalg.eigh`` in float64. Memory: ``D x D`` float64 (512 MiB
  for ``conv0`` of the published model, D = 8192); time: linear in N plus one eigendecomposition.
- ``ipca``: scikit-learn ``IncrementalPCA`` in chunks of ``max(batch, K)`` rows (what the original
  ``gansynth_ganspace`` did); single process only.
- ``pca``: scikit-learn ``PCA`` (full SVD) on all N activations held in memory; single process only.

Every estimator takes activation batches ``[b, D]`` (D = H * W * C, NHWC order) and returns
:class:`PCAStats`: components sorted by decreasing variance, unit L2 norm, with the sign
convention of :mod:`ganspace.space.directions` (largest-magnitude entry positive).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ganspace.distrib import all_reduce_sum, rank_and_size
from ganspace.errors import InputError

log = logging.getLogger(__name__)

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


# ---- the registry ------------------------------------------------------------------------------
@dataclass(frozen=True)
class FitJob:
    """What an estimator is asked to do.

    Attributes:
        samples: N, the rows the batches hold (over all ranks under ``torch.distributed``).
        dim: D, the values per row.
        components: K, the components to keep (``1 <= K <= min(N, D)``).
        batch: rows per batch (the IPCA chunk, raised to at least K).
        device: where the activations are.
    """

    samples: int
    dim: int
    components: int
    batch: int
    device: torch.device


@dataclass(frozen=True)
class Estimator:
    """One PCA estimator.

    Attributes:
        name: what ``--estimator`` takes.
        help: one line for ``--help``.
        distributed: whether it runs under ``torchrun`` (each rank fitting its slice of N).
        fit: ``fit(batches [b, D], job) -> PCAStats``.
    """

    name: str
    help: str
    distributed: bool
    fit: Callable[[Iterable[Tensor], FitJob], PCAStats]


ESTIMATORS: dict[str, Estimator] = {e.name: e for e in (
    Estimator("cov", "streamed float64 covariance + eigh (default, fastest, any N)", True,
              lambda batches, job: fit_cov(batches, job.dim, job.components, job.device)),
    Estimator("ipca", "scikit-learn IncrementalPCA", False,
              lambda batches, job: fit_ipca(batches, job.samples, job.components, job.batch)),
    Estimator("pca", "scikit-learn PCA in memory", False,
              lambda batches, job: fit_pca(batches, job.samples, job.dim, job.components)),
)}
"""Every estimator by name."""
DEFAULT_ESTIMATOR = "cov"


def get_estimator(name: str) -> Estimator:
    """The estimator called ``name``; InputError listing the valid names."""
    if name not in ESTIMATORS:
        raise InputError(f"estimator must be one of {', '.join(ESTIMATORS)}, got {name!r}")
    return ESTIMATORS[name]


def names_text(names: Iterable[str] | None = None) -> str:
    """``cov, ipca or pca``: estimator names for messages (default: all of them)."""
    items = list(ESTIMATORS if names is None else names)
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


def estimator_help() -> str:
    """``--estimator`` help: ``name: help`` of each estimator."""
    return "; ".join(f"{e.name}: {e.help}" for e in ESTIMATORS.values())
