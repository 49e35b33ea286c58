"""Arguments shared by several verbs: the model folder, ``--device`` and ``--precision`` (the one
place where their accepted values live)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from ganspace.engine.model import PRECISIONS

_DEVICE = re.compile(r"cpu|cuda(:\d+)?")


def device_name(text: str) -> str:
    """Check a ``--device`` value: ``cpu``, ``cuda`` or ``cuda:N``."""
    if not _DEVICE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:N, got {text!r}")
    return text


def add_device_arg(p: argparse.ArgumentParser) -> None:
    """``--device`` (default None: CUDA when available, else the CPU)."""
    p.add_argument("--device", type=device_name, metavar="{cpu,cuda,cuda:N}",
                   help="cpu, cuda or cuda:N (default: cuda when available)")


def add_precision_arg(p: argparse.ArgumentParser, default: str = "float32") -> None:
    """``--precision``: the generator precisions a model offers."""
    p.add_argument("--precision", default=default, choices=list(PRECISIONS),
                   help="generator precision (reduced precision on CUDA only)")


def add_model_args(p: argparse.ArgumentParser) -> None:
    """The positional ``model`` folder and ``--device``."""
    p.add_argument("model", type=Path, help="Magenta checkpoint folder or native model folder")
    add_device_arg(p)
