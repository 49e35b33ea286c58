"""The measured labels of the loaded directions (``/directions.labels``): read only from the
directions file the server loaded (``ganspacesynth eval --write-labels`` stores them there), none
for a file without labels or without directions, and sent to subscribers after every load.

Against the in-process server on loopback with the tiny model; every wait has a time limit.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ganspace.engine.model import GANSynthModel, random_model
from ganspace.space.directions import Directions, load_directions, save_directions, write_labels
from ganspace_server.client import Client
from ganspace_server.config import ServerConfig
from ganspace_server.server import Server

T = 30.0  # seconds any single answer may take
K = 5


def _measured(label: str, descriptor: str) -> dict[str, Any]:
    """One entry of ``meta["labels"]`` as ``ganspace.train.evaluate.direction_labels`` writes
    it."""
    return {"label": label, "descriptor": descriptor, "sign": 1.0, "monotonic_fraction": 0.8,
            "spearman_median": 1.0}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, tiny_model: GANSynthModel) -> Path:
    """A model root: the tiny model, ``labelled.safetensors`` (components 0 and 2 measured, plus
    entries ``Directions.labels`` refuses), ``plain.safetensors`` (no labels), and ``other``
    (another model)."""
    root = tmp_path_factory.mktemp("root")
    tiny_model.save(root / "tiny")
    random_model(seed=1).save(root / "other")
    h, w, c = tiny_model.layer_shape("conv0")
    rng = np.random.default_rng(0)
    comp = rng.standard_normal((K, h * w * c)).astype(np.float32)
    comp /= np.linalg.norm(comp, axis=1, keepdims=True)
    stdev = np.linspace(2.0, 1.0, K).astype(np.float32)
    d = Directions("conv0", comp.reshape(K, h, w, c), stdev, stdev**2 / (stdev**2).sum(),
                   np.zeros((h, w, c), np.float32), tiny_model.fingerprint, {"estimator": "test"})
    for name in ("labelled", "plain"):
        save_directions(d, root / f"{name}.safetensors")
    write_labels(root / "labelled.safetensors", {
        "0": _measured("brightness", "centroid"), "2": _measured("attack time", "attack"),
        "3": _measured("Level!", "level"), str(K): _measured("decay", "decay")})
    return root


@pytest.fixture
def server(tiny_model: GANSynthModel, root: Path, tmp_path: Path) -> Iterator[Server]:
    """A server on the tiny model with the labelled directions."""
    cfg = ServerConfig(port=0, model_roots=[root], cache_dir=tmp_path / "cache")
    with Server(tiny_model, cfg, "tiny", load_directions(root / "labelled.safetensors")) as s:
        yield s


def _broadcast(c: Client) -> list[Any]:
    """The next ``/directions.labels.reply`` event a subscribed client received."""
    return c.expect(lambda m: m[0] == "/directions.labels.reply", timeout=T)[1]


def test_the_labels_of_the_loaded_file_and_none_without(server: Server, root: Path) -> None:
    with Client(*server.address, timeout=T) as c:
        # index 3 (not a plain word) and index K (no such component) never reach a client;
        # the words of a label are joined by "_" (one Pd symbol)
        assert c.query("/directions.labels", "/directions.labels.reply") == [
            2, 0, "brightness", 2, "attack_time"]
        assert c.labels() == {0: "brightness", 2: "attack_time"}
        c.load_directions("plain.safetensors")
        assert c.query("/directions.labels", "/directions.labels.reply") == [0]
        assert c.labels() == {}


def test_no_directions_no_labels(tiny_model: GANSynthModel, root: Path, tmp_path: Path) -> None:
    cfg = ServerConfig(port=0, model_roots=[root], cache_dir=tmp_path / "cache")
    with Server(tiny_model, cfg, "tiny") as server, Client(*server.address, timeout=T) as c:
        assert c.labels() == {}


def test_subscribers_get_the_labels_after_every_load(server: Server) -> None:
    with Client(*server.address, timeout=T, subscribe=True) as c:
        assert c.load_directions("plain.safetensors") == (K, "conv0")
        assert _broadcast(c) == [0]
        c.load_directions("labelled.safetensors")
        assert _broadcast(c) == [2, 0, "brightness", 2, "attack_time"]
        c.load_model("tiny")                             # the directions fit: labels kept
        assert _broadcast(c) == [2, 0, "brightness", 2, "attack_time"]
        c.load_model("other")                            # another model: directions dropped
        assert _broadcast(c) == [0]
        assert c.labels() == {}
    with Client(*server.address, timeout=T) as quiet:    # not subscribed: no event
        quiet.load_model("tiny")
        quiet.sync()
        assert not [m for m in quiet.drain() if m[0] == "/directions.labels.reply"]
