"""Latent-space helpers: Magenta's slerp made safe, and input checks for latent vectors."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from ganspace.errors import InputError


def slerp(a: ArrayLike, b: ArrayLike, t: ArrayLike) -> np.ndarray:
    """Spherical interpolation between latent vectors, as Magenta's ``gansynth.lib.util.slerp``.

    ``omega = arccos(<a/|a|, b/|b|>)``; result ``sin((1-t) w)/sin w * a + sin(t w)/sin w * b``,
    not renormalised. Where Magenta divides by ``sin w = 0`` (parallel or opposite vectors, or a
    zero vector) this falls back to linear interpolation, so the result is always finite.

    Args:
        a, b: [..., D] vectors (broadcastable).
        t: scalar or [...] interpolation positions (0 gives a, 1 gives b).
    Returns:
        [..., D] float64 for float64 inputs, else float32.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    dtype = np.float64 if np.float64 in (a.dtype, b.dtype) else np.float32
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    t64 = np.asarray(t, dtype=np.float64)[..., None]
    na = np.linalg.norm(a64, axis=-1, keepdims=True)
    nb = np.linalg.norm(b64, axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        cos = np.sum((a64 / na) * (b64 / nb), axis=-1, keepdims=True)
        omega = np.arccos(np.clip(cos, -1.0, 1.0))
        so = np.sin(omega)
        spherical = (np.sin((1.0 - t64) * omega) / so) * a64 + (np.sin(t64 * omega) / so) * b64
    linear = (1.0 - t64) * a64 + t64 * b64
    degenerate = ~np.isfinite(spherical).all(axis=-1, keepdims=True) | (np.abs(so) < 1e-7)
    return np.where(degenerate, linear, spherical).astype(dtype)


def check_latents(z: ArrayLike, latent_size: int) -> np.ndarray:
    """Validate latents and return them as float32 [N, latent_size].

    Accepts [latent_size] (one vector) or [N, latent_size]; raises InputError naming the problem
    (wrong width, wrong rank, NaN or inf).
    """
    arr = np.asarray(z, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2:
        raise InputError(f"z must be [N, {latent_size}], got shape {list(arr.shape)}")
    if arr.shape[1] != latent_size:
        raise InputError(
            f"z has width {arr.shape[1]}, but this model's latent size is {latent_size}"
        )
    if not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise InputError(f"z contains NaN or inf (first at row {bad[0]}, column {bad[1]})")
    return arr
