"""Device safety without a GPU: no tensor on the generation, edit, PCA or training paths is created
on a device other than the model's (on CUDA such a tensor fails or forces a host round trip).

Two complementary tricks, each with a planted bug that it must catch:

- **Model on the CPU, default device ``meta``** (:func:`default_device_meta`): a tensor created
  without naming the model's device lands on ``meta``; mixing it with the model's CPU tensors
  raises, and reading it back (``.cpu()``, ``.numpy()``, ``.item()``) raises too. The paths run
  to the end: audio as numpy, a directions file, a training step's losses.
- **Model on ``meta``, default device CPU**: a tensor created on the CPU (by default or by a
  hard-coded ``"cpu"``) meets the model's ``meta`` tensors and raises. Meta tensors hold no data,
  so this covers the device-side parts (spectrograms, the audio stage, activations, the PCA
  accumulator, the losses), not the final copies to the host.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

from ganspace.engine import audio
from ganspace.engine.model import GANSynthModel, random_model
from ganspace.space.directions import Directions
from ganspace.space.estimators import CovarianceAccumulator
from ganspace.space.hallucinate import Envelope, hallucinate_coefficients, hallucinate_z
from ganspace.space.pca import compute_directions
from ganspace.train.dataset import Dataset
from ganspace.train.discriminator import Discriminator
from ganspace.train.losses import discriminator_loss, generator_loss
from ganspace.train.schedule import config_hparams, generate_at_stage
from ganspace.train.synthdata import render_dataset
from ganspace.train.trainer import Trainer, TrainOptions

META_ERRORS = (RuntimeError, NotImplementedError, TypeError)


@contextmanager
def default_device_meta() -> Iterator[None]:
    """Tensors created without a device go to ``meta`` inside the block."""
    torch.set_default_device("meta")
    try:
        yield
    finally:
        torch.set_default_device(None)


@pytest.fixture(scope="module")
def cpu_model() -> GANSynthModel:
    return random_model(seed=3)


@pytest.fixture(scope="module")
def meta_model() -> GANSynthModel:
    return random_model(seed=3, device="meta")


@pytest.fixture(scope="module")
def directions(cpu_model: GANSynthModel) -> Directions:
    return compute_directions(cpu_model, "conv0_2", samples=64, seed=0, components=4,
                              estimator="cov")


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    root = tmp_path_factory.mktemp("device-data")
    return render_dataset(root / "ds", [48, 55], notes_per_pitch=2, seed=1)


def test_default_device_meta_catches_a_tensor_made_without_a_device(
        cpu_model: GANSynthModel) -> None:
    """The planted bug: an edit adding a tensor created without ``device=``."""
    z = cpu_model.random_z(2, seed=0)

    def bug(act: torch.Tensor) -> torch.Tensor:
        return act + torch.ones(act.shape[1:])

    cpu_model.fast_generator(torch.as_tensor(z), torch.tensor([0, 1]), edit=("conv1", bug))
    with default_device_meta(), pytest.raises(META_ERRORS):
        cpu_model.fast_generator(torch.as_tensor(z, device="cpu"),
                                 torch.tensor([0, 1], device="cpu"), edit=("conv1", bug))
    with default_device_meta(), pytest.raises(META_ERRORS):  # and reading one back
        torch.arange(3).numpy()


def test_generation_and_edits_make_tensors_on_the_models_device(
        cpu_model: GANSynthModel, directions: Directions) -> None:
    z = cpu_model.random_z(3, seed=1)
    with default_device_meta():
        notes = cpu_model.generate(z, [40, 50, 60])
        edited = cpu_model.generate(z, 50, directions=directions, coefficients=[1.0, -2.0])
        noz = cpu_model.generate(None, [50, 51], directions=directions,
                                 coefficients=[[0.5], [1.0]])
        act = cpu_model.activations(z, 50, "conv1_2")
        spec = cpu_model.generate_specgram(z, 40)
        env = Envelope(0.0, 0.05, 0.1, 0.05)
        clip_z = hallucinate_z(cpu_model, z[:2], 1, 50, env, 0.1, directions, [0.5])
        clip_c = hallucinate_coefficients(cpu_model, directions, np.array([[0.0], [1.0]]), 2, 50,
                                          env, 0.1)
    assert notes.shape == edited.shape == (3, 64000) and noz.shape == (2, 64000)
    assert np.isfinite(notes).all() and np.isfinite(edited).all() and np.isfinite(noz).all()
    assert act.device.type == spec.device.type == "cpu"
    assert clip_z.count == 3 and clip_c.count == 3


def test_pca_makes_tensors_on_the_models_device(cpu_model: GANSynthModel, tmp_path: Path,
                                                directions: Directions) -> None:
    with default_device_meta():
        d = compute_directions(cpu_model, "conv0_2", samples=64, seed=0, components=4,
                               estimator="cov")
    np.testing.assert_array_equal(d.components, directions.components)


def test_a_training_step_makes_tensors_on_the_models_device(tiny_dataset: Dataset,
                                                            tmp_path: Path) -> None:
    trainer = Trainer.create(TrainOptions(dataset=tiny_dataset.path, out=tmp_path / "run",
                                          config="tiny", threads=1, progress_bar=False,
                                          device="cpu"))
    for _ in range(3):  # the first steps include a stage change (fresh optimizers)
        with default_device_meta():
            losses = trainer.step()
        assert all(np.isfinite(v) for v in losses.values())


def test_meta_model_catches_a_cpu_tensor(meta_model: GANSynthModel) -> None:
    """The planted bug: an edit adding a tensor hard-coded to the CPU."""
    z = torch.zeros(2, meta_model.latent_size, device="meta")
    labels = torch.zeros(2, dtype=torch.long, device="meta")

    def bug(act: torch.Tensor) -> torch.Tensor:
        return act + torch.ones(act.shape[1:], device="cpu")

    assert meta_model.fast_generator(z, labels).device.type == "meta"
    with pytest.raises(RuntimeError, match="device"):
        meta_model.fast_generator(z, labels, edit=("conv1", bug))


def test_device_side_paths_on_a_meta_model(meta_model: GANSynthModel,
                                           directions: Directions) -> None:
    directions = copy.copy(directions)
    directions.fingerprint = None  # a meta model's weights cannot be read to fingerprint them
    z = meta_model.random_z(2, seed=0)
    spec = meta_model.generate_specgram(z, [40, 41])
    edited = meta_model.generate_specgram(z, 40, directions=directions, coefficients=[1.0])
    noz = meta_model.generate_specgram(None, [40], directions=directions, coefficients=[1.0])
    notes = audio.melspecgrams_to_audio(spec)
    back = audio.audio_to_melspecgrams(notes)
    act = meta_model.activations(z, 40, "conv0_2")
    for t in (spec, edited, noz, notes, back, act):
        assert t.device.type == "meta"
    acc = CovarianceAccumulator(act[0].numel(), meta_model.device)
    acc.update(act.reshape(2, -1))
    assert acc.sum.device.type == "meta"
    assert meta_model.with_precision("float32").fast_generator.c1_1_w.device.type == "meta"


def test_losses_on_meta() -> None:
    hp = config_hparams("tiny")
    with torch.device("meta"):
        from ganspace.engine.generator import Generator, GeneratorConfig

        cfg = GeneratorConfig.from_hparams(hp, 3, num_blocks=7, progress=2.5)
        gen, disc = Generator(cfg), Discriminator(cfg)
        z = torch.randn(2, cfg.latent_size)
        labels = torch.tensor([0, 2])
        eps = torch.rand(2, 1, 1, 1)
    fake = generate_at_stage(gen, z, labels, 2.5)
    g_loss, _ = generator_loss(disc, fake, labels, 2.5, hp)
    d = discriminator_loss(disc, fake.detach(), labels, fake.detach(), eps, 2.5, 8, hp)
    assert fake.device.type == g_loss.device.type == d.total.device.type == "meta"
