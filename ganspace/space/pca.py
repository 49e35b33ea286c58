"""PCA of one generator layer's activations: the GANSpace directions.

Sampling: ``z ~ N(0, 1)`` (float32, ``latent_size`` wide) at one fixed pitch (32 when the model
knows it, else its middle pitch). Sample ``i`` of seed ``s`` is row ``i % LATENT_CHUNK`` of the
block ``numpy.random.default_rng([s, i // LATENT_CHUNK]).standard_normal((LATENT_CHUNK, Z))``, so
the samples do not depend on the batch size, and each ``torchrun`` rank can draw its own disjoint
slice of the same N samples.

The estimators and their registry are in :mod:`ganspace.space.estimators`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from ganspace.distrib import rank_and_size
from ganspace.engine.model import GANSynthModel, default_pitch
from ganspace.errors import InputError
from ganspace.space.directions import Directions
from ganspace.space.estimators import (
    DEFAULT_ESTIMATOR,
    ESTIMATORS,
    FitJob,
    PCAStats,
    get_estimator,
    names_text,
)

DEFAULT_COMPONENTS = 512
LATENT_CHUNK = 1024


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
    estimator: str = DEFAULT_ESTIMATOR,
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
        estimator: a name in :data:`~ganspace.space.estimators.ESTIMATORS` (``cov``, ``ipca``,
            ``pca``).
        components: keep at most K components (None: all); never more than ``min(N, D)``.
        batch: latents per forward pass (also the IPCA chunk, raised to at least K).
        progress: show a tqdm bar (rank 0 only, on a terminal).
    Returns:
        :class:`Directions` with the model's fingerprint and the job in ``meta``. Under
        ``torch.distributed`` (``cov`` only) every rank computes its slice of the N samples and
        returns the same directions.
    """
    est = get_estimator(estimator)
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
    if size > 1 and not est.distributed:
        spread = names_text(e.name for e in ESTIMATORS.values() if e.distributed)
        raise InputError(f"estimator {estimator} runs in one process; use {spread} under torchrun")
    start, stop = rank_slice(samples, rank, size)
    # disable=None: tqdm shows the bar only on a terminal
    with tqdm(total=stop - start, unit="z", desc=f"pca {layer}",
              disable=True if not progress or rank != 0 else None) as bar:
        def batches() -> Iterator[Tensor]:
            for x in iter_activations(model, layer, pitch, seed, start, stop, batch):
                yield x
                bar.update(len(x))
            bar.close()  # before the decomposition, so the bar times the sampling only

        stats = est.fit(batches(), FitJob(samples, dim, k, batch, model.device))
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


