"""Arguments shared by several verbs: the model folder, ``--device`` and ``--precision`` (the one
place where their accepted values live)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from ganspace.engine.precision import PRECISION_CHOICES

_DEVICE = re.compile(r"cpu|cuda(:\d+)?")


def device_name(text: str) -> str | None:
    """Check a ``--device`` value: ``auto`` (None: CUDA when available), ``cpu``, ``cuda`` or
    ``cuda:N``."""
    if text == "auto":
        return None
    if not _DEVICE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N, got {text!r}")
    return text


def add_device_arg(p: argparse.ArgumentParser, default: str | None = None) -> None:
    """``--device``; the parsed value is None for ``auto`` (CUDA when available, else the CPU),
    the default unless ``default`` names a device."""
    p.add_argument("--device", type=device_name, default=default,
                   metavar="{auto,cpu,cuda,cuda:N}",
                   help=f"auto, cpu, cuda or cuda:N (default: {default or 'auto'}; auto = cuda "
                   "when available)")


def add_precision_arg(p: argparse.ArgumentParser, default: str = "float32") -> None:
    """``--precision``: ``auto`` or a generator precision (checked against the device when the
    model loads: :func:`ganspace.engine.precision.resolve_precision`)."""
    p.add_argument("--precision", default=default, choices=list(PRECISION_CHOICES),
                   help=f"generator precision (default {default}): auto picks float16 on CUDA, "
                   "bfloat16 on CPUs with AVX512-BF16 or AMX, else float32; bfloat16 is refused "
                   "on other CPUs, float16 is CUDA only")


def add_model_args(p: argparse.ArgumentParser) -> None:
    """The positional ``model`` folder and ``--device``."""
    p.add_argument("model", type=Path, help="Magenta checkpoint folder or native model folder")
    add_device_arg(p)
