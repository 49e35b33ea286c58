"""Numeric helpers shared by test modules (importable because pytest puts tests/ on sys.path
for tests/conftest.py)."""

from __future__ import annotations

import numpy as np
import torch


def rel_err(x: torch.Tensor | np.ndarray, ref: torch.Tensor | np.ndarray) -> float:
    """Max abs difference relative to the reference's max abs (in float64)."""
    x64 = np.asarray(x, dtype=np.float64)
    ref64 = np.asarray(ref, dtype=np.float64)
    return float(np.abs(x64 - ref64).max() / np.abs(ref64).max())


def wrapped_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Difference of two IF / pi arrays modulo 2 (IF = +1 and -1 are the same phase step)."""
    return np.abs((np.asarray(a, np.float64) - np.asarray(b, np.float64) + 1.0) % 2.0 - 1.0)
