"""Shared test fixtures (the Magenta fixture checkpoint, tiny random native models) and the
markers by folder: every test in ``tests/<folder>/`` is marked ``<folder>`` (``unit``, ``parity``,
``server``, ``e2e``; registered in pyproject.toml), so ``python -m pytest -m "not e2e"`` skips the
real-Pd tests and plain ``python -m pytest`` runs everything."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from ganspace.engine.model import GANSynthModel, random_model

torch.set_num_threads(min(2, os.cpu_count() or 1))

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
MAGENTA_SMALL = SHARED / "fixtures" / "magenta_small"
FOLDER_MARKERS = ("unit", "parity", "server", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with the name of its folder when that is one of :data:`FOLDER_MARKERS`."""
    for item in items:
        folder = item.path.parent.name
        if folder in FOLDER_MARKERS:
            item.add_marker(folder)


@pytest.fixture(scope="session")
def magenta_small() -> Path:
    """The shared Magenta checkpoint folder (fails clearly when shared/ is missing)."""
    if not (MAGENTA_SMALL / "experiment.json").is_file():
        pytest.fail(f"shared fixture missing: {MAGENTA_SMALL} (CI clones shared/ beside the repo)")
    return MAGENTA_SMALL


@pytest.fixture(scope="session")
def tiny_model() -> GANSynthModel:
    """A tiny random model over pitches 24..84 (session-wide; do not mutate)."""
    return random_model()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model: GANSynthModel) -> Path:
    """The tiny model saved in the native format."""
    return tiny_model.save(tmp_path_factory.mktemp("models") / "tiny")
