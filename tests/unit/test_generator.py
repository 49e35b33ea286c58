"""The folded inference generator equals the faithful one; layer names, noz mode, published dims
(parity with Magenta's graph: tests/parity/test_generator_parity.py)."""

from __future__ import annotations

import pytest
import torch

from ganspace.engine.generator import (
    FastGenerator,
    Generator,
    GeneratorConfig,
    upsample_conv_kernel,
)
from ganspace.engine.hparams import published_hparams
from ganspace.errors import InputError


def test_published_dims_parameter_count():
    hp = published_hparams()
    cfg = GeneratorConfig.from_hparams(hp, 61, num_blocks=7, progress=6.0)
    with torch.device("meta"):
        gen = Generator(cfg)
    assert [cfg.channels(k) for k in range(1, 8)] == [256, 256, 256, 256, 128, 64, 32]
    assert gen.num_parameters() == 7_311_246


def test_upsample_conv_kernel_equals_upsample_then_conv():
    torch.manual_seed(1)
    x = torch.randn(2, 3, 5, 7, dtype=torch.float64)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    want = torch.nn.functional.conv2d(
        torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest"), w, padding=1
    )
    y = torch.nn.functional.conv_transpose2d(x, upsample_conv_kernel(w), stride=2, padding=1)
    assert y.shape == want.shape == (2, 4, 10, 14)
    assert torch.allclose(y, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("progress", [0.0, 2.5, 4.0, 6.0])
def test_fast_equals_faithful_at_every_stage(progress):
    # 4-channel random nets amplify float32 rounding through pixel norm (~1e-3 at block 7 in
    # both paths); the strict parity bound is checked against Magenta's fixture above.
    torch.manual_seed(0)
    cfg = GeneratorConfig(latent_size=6, num_pitches=3, num_blocks=7, fmap_base=1024, fmap_max=4,
                          progress=progress)
    gen = Generator(cfg).eval()
    fast = FastGenerator.from_generator(gen)
    z = torch.randn(3, 6)
    labels = torch.tensor([0, 1, 2])
    with torch.no_grad():
        assert torch.allclose(gen(z, labels), fast(z, labels), atol=3e-3)
        edit = ("conv1_2", lambda a: a * 0.5)
        assert torch.allclose(gen(z, labels, edit=edit), fast(z, labels, edit=edit), atol=3e-3)


def test_layer_names_and_errors():
    cfg = GeneratorConfig(latent_size=4, num_pitches=2, num_blocks=3, fmap_base=64, fmap_max=4)
    assert cfg.layer_names() == ["conv0", "conv1", "conv0_2", "conv1_2", "conv0_3", "conv1_3"]
    assert cfg.layer_shape("conv0_3") == (8, 64, 4)
    with pytest.raises(InputError, match="unknown layer 'conv9'.*conv0, conv1"):
        cfg.layer_index("conv9")


def test_noz_mode_ignores_z_and_pitch():
    torch.manual_seed(0)
    cfg = GeneratorConfig(latent_size=6, num_pitches=3, num_blocks=7, fmap_base=1024, fmap_max=4)
    fast = FastGenerator.from_generator(Generator(cfg).eval())
    fill = ("conv0", lambda a: torch.ones_like(a))
    with torch.no_grad():
        a = fast(None, torch.tensor([0, 1]), edit=fill)
        b = fast(torch.randn(2, 6), torch.tensor([2, 2]), edit=fill)
    assert torch.equal(a, b)
    with pytest.raises(InputError, match="z is required"):
        fast(None, torch.tensor([0]))


def test_prepacked_weights_give_the_plain_output() -> None:
    from ganspace.engine.generator import PREPACKED_BATCHES

    torch.manual_seed(0)
    cfg = GeneratorConfig(latent_size=6, num_pitches=3, num_blocks=7, fmap_base=1024, fmap_max=8)
    fast = FastGenerator.from_generator(Generator(cfg).eval())
    if not fast.enable_prepack():
        pytest.skip("this torch build has no oneDNN weight prepacking")
    plain = FastGenerator.from_generator(Generator(cfg).eval())
    plain.load_state_dict(fast.state_dict())
    with torch.no_grad():
        for b in (1, 2, 3, 4, 5, 2):
            z, labels = torch.randn(b, 6), torch.arange(b) % 3
            # oneDNN may sum in another order; random 8-channel nets amplify it (see above)
            torch.testing.assert_close(fast(z, labels), plain(z, labels), rtol=0, atol=1e-3)
    assert fast._prepacked is not None and plain._prepacked is None
    assert list(fast._prepacked) == [3, 4, 5, 2][-PREPACKED_BATCHES:]  # least recently used out
    assert len(fast._prepacked[2]) == 13  # every conv after block 1's conv0, once
    assert all(w.layout == torch._mkldnn for w in fast._prepacked[2].values())
    fast.disable_prepack()
    assert fast._prepacked is None
