"""Generator parity with Magenta's graph on the fixture: the faithful and the folded generator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ganspace.engine.generator import FastGenerator, Generator, GeneratorConfig
from ganspace.formats import magenta

TANH_TOL = 1e-4


@pytest.fixture(scope="module")
def ref(magenta_small):
    return dict(np.load(magenta_small / "reference_io.npz"))


def _generators(magenta_small, progress: float) -> tuple[Generator, FastGenerator]:
    ck = magenta.find_checkpoint(magenta_small)
    cfg = GeneratorConfig.from_hparams(ck.hparams, len(ck.pitches), ck.num_blocks, progress)
    gen = Generator(cfg)
    gen.load_state_dict(magenta.generator_state_dict(ck))
    gen.eval()
    return gen, FastGenerator.from_generator(gen)


@pytest.mark.parametrize("which", ["final", "trans"])
def test_tanh_output_matches_magenta(magenta_small, ref, which):
    key = "predictions_tanh_blend" if which == "final" else "trans_predictions_tanh_blend"
    progress = float(ref["progress" if which == "final" else "trans_progress"])
    gen, fast = _generators(magenta_small, progress)
    z = torch.tensor(ref["z"])
    labels = torch.tensor(ref["labels"]).long()
    with torch.no_grad():
        for net in (gen, fast):
            out = net(z, labels).permute(0, 2, 3, 1).numpy()
            assert np.abs(out - ref[key]).max() <= TANH_TOL


def test_layer_activations_match_magenta(magenta_small, ref):
    gen, fast = _generators(magenta_small, float(ref["progress"]))
    z = torch.tensor(ref["z"])
    labels = torch.tensor(ref["labels"]).long()
    pairs = {
        "conv0": "act__progressive_gan_block_1__conv0",
        "conv1": "act__progressive_gan_block_1__conv1",
        "conv1_7": "act__progressive_gan_block_7__conv1",
    }
    with torch.no_grad():
        for layer, key in pairs.items():
            want = ref[key]
            for net in (gen, fast):
                got = net.activations(z, labels, layer).permute(0, 2, 3, 1).numpy()
                assert got.shape == want.shape
                assert np.abs(got - want).max() <= 1e-4 * max(1.0, np.abs(want).max())
