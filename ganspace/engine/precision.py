"""Generator precisions: which ones a device offers, and what ``auto`` means there.

One module for generation (``load_model(..., precision=...)``, every ``--precision``) and training:

- ``float32`` runs everywhere.
- ``bfloat16`` runs on CUDA GPUs that support it and on CPUs whose bfloat16 convolutions are
  fast (:func:`cpu_supports_bf16`); elsewhere it is refused with a clear error instead of
  silently running several times slower than float32.
- ``float16`` runs on CUDA only.
- ``auto`` is the fastest faithful precision the device offers: on CUDA ``float16`` (as fast as
  bfloat16 on tensor cores, and 8x closer to float32: 0.12 dB against 0.94 dB log-mel median
  difference on the default model, see docs/benchmarks.md; the pixel norms' sums of squares stay
  float32, so activations do not overflow), on a CPU ``bfloat16`` where
  :func:`cpu_supports_bf16`, else ``float32``.

CPU detection. oneDNN (PyTorch's CPU convolution library) runs bfloat16 convolutions natively
only with the AVX512-BF16 or AMX-BF16 instructions (and BF16 on Arm); without them a bfloat16
``conv2d`` falls back to ``aten::_slow_conv2d_forward``, measured about 5x slower than float32 on
an AVX2 AMD EPYC. So bfloat16 counts as supported when oneDNN is built in and the CPU reports
``avx512_bf16`` or ``amx_bf16`` (x86) or ``bf16`` (Arm), read from ``torch.cpu.get_capabilities()``
where this torch has it, else from ``/proc/cpuinfo``. A timed probe was rejected: on a shared,
loaded machine (CI) its answer would change from run to run, and it costs time at every load.

The environment variable :data:`CPU_BF16_ENV` overrides the detection: ``1`` treats the CPU as
supporting bfloat16 (tests exercise the bfloat16 path on any CPU this way; it is then slow but
correct), ``0`` as not supporting it.
"""

from __future__ import annotations

import os
import platform
from functools import cache
from pathlib import Path

import torch

from ganspace.errors import InputError

PRECISIONS: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
"""Generator precisions by name (what a model can run in; see :func:`resolve_precision`)."""
AUTO = "auto"
PRECISION_CHOICES: tuple[str, ...] = (AUTO, *PRECISIONS)
"""Every accepted ``precision`` value (the ``--precision`` choices)."""
CPU_BF16_ENV = "GANSPACE_CPU_BF16"
"""``1``: treat the CPU as supporting bfloat16; ``0``: as not; unset: detect."""
_BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}
CPUINFO = Path("/proc/cpuinfo")
"""Read for the CPU flags where torch has no ``torch.cpu.get_capabilities`` (before 2.9)."""


def precision_name(dtype: torch.dtype) -> str:
    """The name of a generator dtype (``torch.bfloat16`` -> ``"bfloat16"``)."""
    for name, d in PRECISIONS.items():
        if d == dtype:
            return name
    raise InputError(f"{dtype} is not a generator precision ({', '.join(PRECISIONS)})")


@cache
def _cpu_flags() -> frozenset[str]:
    """CPU feature names that matter for bfloat16, from torch's cpuinfo or /proc/cpuinfo."""
    get_capabilities = getattr(torch.cpu, "get_capabilities", None)  # torch >= 2.9
    if get_capabilities is not None:
        caps = get_capabilities()
        return frozenset(name for name in _BF16_FLAGS if caps.get(name) is True)
    try:
        text = CPUINFO.read_text()
    except OSError:
        return frozenset()
    words: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            words.update(value.split())
    return frozenset(words & _BF16_FLAGS)


def cpu_bf16_hardware() -> bool:
    """Whether this CPU and torch build run bfloat16 convolutions natively (the detection alone,
    without :data:`CPU_BF16_ENV`)."""
    return torch.backends.mkldnn.is_available() and bool(_cpu_flags())


def cpu_supports_bf16() -> bool:
    """Whether ``bfloat16`` is offered on the CPU: :data:`CPU_BF16_ENV` when set to ``0`` or
    ``1``, else :func:`cpu_bf16_hardware`."""
    forced = os.environ.get(CPU_BF16_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    return cpu_bf16_hardware()


def describe_cpu() -> str:
    """A short description of the CPU for messages, e.g. ``AMD EPYC (x86_64, AVX2)``."""
    get_capabilities = getattr(torch.cpu, "get_capabilities", None)
    name = str(get_capabilities().get("cpu_name", "")) if get_capabilities else ""
    capability = torch.backends.cpu.get_cpu_capability()
    return f"{name or platform.processor() or 'this CPU'} ({platform.machine()}, {capability})"


def resolve_precision(precision: str, device: torch.device | str) -> torch.dtype:
    """The dtype to run a generator in on ``device``.

    Args:
        precision: ``auto``, ``float32``, ``bfloat16`` or ``float16``.
        device: where the generator runs (``cpu``, ``cuda``, ``cuda:N``; other device types, e.g.
            ``meta``, offer float32 only).
    Returns:
        ``torch.float32``, ``torch.bfloat16`` or ``torch.float16``.
    Raises:
        InputError naming the precision and why the device does not offer it.
    """
    dev = torch.device(device)
    if precision not in PRECISION_CHOICES:
        raise InputError(f"precision must be one of {', '.join(PRECISION_CHOICES)}, got "
                         f"{precision!r}")
    if dev.type == "cuda":
        if precision == AUTO:
            return torch.float16
        if precision == "bfloat16" and not (torch.cuda.is_available()
                                            and torch.cuda.is_bf16_supported()):
            raise InputError("precision bfloat16 is not supported by this GPU; use float16 or "
                             "float32")
        return PRECISIONS[precision]
    if precision in (AUTO, "float32"):
        if precision == AUTO and dev.type == "cpu" and cpu_supports_bf16():
            return torch.bfloat16
        return torch.float32
    if dev.type != "cpu" or precision == "float16":
        raise InputError(f"precision {precision} is only offered on CUDA"
                         + (" (and bfloat16 on CPUs with AVX512-BF16 or AMX)"
                            if precision == "bfloat16" else "") + "; use float32 or auto")
    if not cpu_supports_bf16():
        raise InputError(
            f"precision bfloat16 needs a CPU with AVX512-BF16 or AMX (or Arm BF16); "
            f"{describe_cpu()} has none, and bfloat16 would run several times slower than "
            f"float32 here. Use float32 or auto (set {CPU_BF16_ENV}=1 to force it anyway)")
    return torch.bfloat16


TRAIN_PRECISION_CHOICES: tuple[str, ...] = (AUTO, "float32", "bfloat16")
"""Every accepted training ``precision`` (``ganspacesynth train --precision``)."""


def resolve_train_precision(precision: str, device: torch.device | str) -> torch.dtype:
    """The autocast dtype for training on ``device`` (parameters, optimizer state and the
    audio features stay float32 either way).

    ``auto`` is bfloat16 on CUDA GPUs that support it and on CPUs where
    :func:`cpu_supports_bf16`, float32 elsewhere; ``bfloat16`` is checked as by
    :func:`resolve_precision`. float16 is not offered: it would need loss scaling.

    Args:
        precision: ``auto``, ``float32`` or ``bfloat16``.
        device: where the training runs.
    Returns:
        ``torch.float32`` or ``torch.bfloat16``.
    Raises:
        InputError naming the precision and why it is not offered.
    """
    dev = torch.device(device)
    if precision not in TRAIN_PRECISION_CHOICES:
        raise InputError(f"training precision must be one of {', '.join(TRAIN_PRECISION_CHOICES)}"
                         f", got {precision!r} (float16 would need loss scaling)")
    if precision == AUTO:
        if dev.type == "cuda":
            supported = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
            return torch.bfloat16 if supported else torch.float32
        return resolve_precision(AUTO, dev)
    return resolve_precision(precision, dev)
