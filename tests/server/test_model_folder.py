"""A model folder that holds exactly one GANSpace directions file loads it together with the model:
``ganspacesynth serve --model DIR`` and ``/model.load``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ganspace.engine.model import GANSynthModel, random_model
from ganspace.space.directions import Directions, save_directions
from ganspace_server.client import Client
from ganspace_server.config import ServerConfig
from ganspace_server.handlers.model import folder_directions
from ganspace_server.server import Server

T = 30.0
K = 5


def _directions(model: GANSynthModel) -> Directions:
    h, w, c = model.layer_shape("conv0")
    rng = np.random.default_rng(0)
    comp = rng.standard_normal((K, h * w * c)).astype(np.float32)
    comp /= np.linalg.norm(comp, axis=1, keepdims=True)
    stdev = np.linspace(2.0, 1.0, K).astype(np.float32)
    return Directions("conv0", comp.reshape(K, h, w, c), stdev, stdev**2 / (stdev**2).sum(),
                      np.zeros((h, w, c), np.float32), model.fingerprint, {"estimator": "test"})


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, tiny_model: GANSynthModel) -> Path:
    """tiny/ (no directions), withdirs/ (one directions file), twodirs/ (two), other/ (another
    model)."""
    root = tmp_path_factory.mktemp("root")
    tiny_model.save(root / "tiny")
    tiny_model.save(root / "withdirs")
    save_directions(_directions(tiny_model), root / "withdirs" / "d.safetensors", "float32")
    tiny_model.save(root / "twodirs")
    for name in ("a", "b"):
        save_directions(_directions(tiny_model), root / "twodirs" / f"{name}.safetensors")
    random_model(seed=1).save(root / "other")
    return root


@pytest.fixture
def server(tiny_model: GANSynthModel, root: Path, tmp_path: Path) -> Iterator[Server]:
    cfg = ServerConfig(port=0, model_roots=[root], cache_dir=tmp_path / "cache")
    with Server(tiny_model, cfg, "tiny") as s:
        yield s


def test_a_model_folder_with_one_directions_file_loads_it(server: Server, root: Path) -> None:
    assert folder_directions(root / "withdirs") == root / "withdirs" / "d.safetensors"
    assert folder_directions(root / "tiny") is None              # generator.safetensors only
    assert folder_directions(root / "twodirs") is None
    with Client(*server.address, timeout=T) as c:
        c.load_model("withdirs")
        assert (c.status().k, c.status().layer) == (K, "conv0")
        c.load_model("twodirs")                      # none chosen: the loaded ones still fit
        assert c.status().k == K
        c.load_model("other")                        # another model: the directions are dropped
        assert c.status().k == 0


def test_serve_loads_the_model_folders_directions(root: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """``ganspacesynth serve --model DIR`` (in-process) with DIR holding one directions file."""
    from ganspace.cli import main as cli_main

    seen: list[int] = []

    def wait(self: Server, timeout: float | None = None) -> bool:
        with Client(*self.address, timeout=T) as c:
            seen.append(c.status().k)
        return True

    monkeypatch.setattr(Server, "wait", wait)
    assert cli_main(["serve", "--model", str(root / "withdirs"), "--port", "0", "--device",
                     "cpu", "--cache-dir", str(tmp_path / "c")]) == 0
    assert seen == [K]
