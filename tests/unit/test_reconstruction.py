"""The reconstruction objective: time-cropped forward pass, losses, deep supervision."""

from __future__ import annotations

import pytest
import torch

from ganspace.engine.generator import Generator, GeneratorConfig
from ganspace.engine.hparams import published_hparams
from ganspace.train.reconstruction import (
    crop_forward,
    deep_weight,
    level_weight,
    reconstruction_loss,
    supervised_loss,
)


@pytest.fixture(scope="module")
def gen() -> Generator:
    cfg = GeneratorConfig(latent_size=6, num_pitches=5, num_blocks=7, fmap_base=1024,
                          fmap_max=8, progress=6.0)
    torch.manual_seed(0)
    g = Generator(cfg)
    with torch.no_grad():  # non-zero biases, so that padded rows would show if mishandled
        for p in g.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return g


@pytest.mark.parametrize(("rows", "crop_from"), [((0, 8), 5), ((60, 68), 5), ((120, 128), 5),
                                                  ((7, 23), 3), ((63, 64), 6), ((0, 128), 2),
                                                  ((10, 20), 8)])
def test_crop_forward_equals_full_forward(gen: Generator, rows: tuple[int, int],
                                          crop_from: int) -> None:
    z, labels = torch.randn(2, 6), torch.tensor([1, 4])
    with torch.no_grad():
        full = crop_forward(gen, z, labels, (0, 128), 8)
        crop = crop_forward(gen, z, labels, rows, crop_from)
        assert torch.equal(full[7].rgb, gen(z, labels))  # progress 6: the last head alone
    for k, out in crop.items():
        height = gen.cfg.resolution(k)[0]
        lo, hi = max(out.row0, 0), min(out.row0 + out.rgb.shape[2], height)
        assert hi > lo
        torch.testing.assert_close(out.rgb[:, :, lo - out.row0 : hi - out.row0],
                                   full[k].rgb[:, :, lo:hi], rtol=0, atol=2e-6)
    last = crop[7]
    assert last.row0 <= rows[0] and last.row0 + last.rgb.shape[2] >= rows[1]


def test_crop_forward_gradients_match(gen: Generator) -> None:
    """The loss on a crop has the gradient of the same loss on those rows of the full output."""
    z, labels = torch.randn(2, 6), torch.tensor([0, 2])
    rows = (40, 48)
    out = crop_forward(gen, z, labels, rows, 5)[7]
    (out.rgb[:, :, rows[0] - out.row0 : rows[1] - out.row0].square().sum()).backward()
    def grads() -> list[torch.Tensor]:  # unused heads have none
        return [torch.zeros_like(p) if p.grad is None else p.grad.clone()
                for p in gen.parameters()]

    cropped = grads()
    gen.zero_grad()
    gen(z, labels)[:, :, rows[0] : rows[1]].square().sum().backward()
    full = grads()
    gen.zero_grad()
    assert sum(float(g.abs().sum()) for g in full) > 0
    for a, b in zip(cropped, full, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_reconstruction_loss_terms() -> None:
    hp = published_hparams()
    target = torch.rand(2, 2, 8, 32) * 2 - 1
    weights = {"mag": 1.0, "mag_grad": 1.0, "if": 1.0, "peak": 10.0}
    total, parts = reconstruction_loss(target, target, hp, weights)
    assert float(total) == 0.0
    # IF is compared directly (level-weighted L1): silent bins do not count.
    shifted = target.clone()
    shifted[:, 1] += 0.5
    assert float(reconstruction_loss(shifted, target, hp, weights)[1]["if"]) == pytest.approx(0.5)
    quiet = target.clone()
    quiet[:, 0] = -1.0  # everything at the floor: level weight 1 only at the (equal) maxima
    assert float(reconstruction_loss(shifted, quiet, hp, weights)[1]["if"]) == pytest.approx(0.5)
    # The silence floor everywhere (L1's optimum before the peaks can be placed) costs more
    # with the peak weight than without.
    peaks = torch.full((1, 2, 4, 32), -0.8)
    peaks[:, 0, :, ::8] = 0.3
    floor = torch.full_like(peaks, -0.8)
    plain = reconstruction_loss(floor, peaks, hp, {**weights, "peak": 0.0})[1]["mag"]
    assert float(reconstruction_loss(floor, peaks, hp, weights)[1]["mag"]) > 3 * float(plain)
    # A blurred magnitude costs in the frequency-gradient term.
    blurred = target.clone()
    blurred[:, 0] = torch.nn.functional.avg_pool1d(target[:, 0].reshape(-1, 1, 32), 5, 1, 2,
                                                   count_include_pad=False).view(2, 8, 32)
    assert float(reconstruction_loss(blurred, target, hp, weights)[1]["mag_grad"]) > 0.05


def test_level_weight_and_deep_weights() -> None:
    logmag = torch.tensor([[[0.0, -6.9, -13.8, -30.0]]])
    torch.testing.assert_close(level_weight(logmag), torch.tensor([[[1.0, 0.5, 0.0, 0.0]]]))
    assert deep_weight(7, 7, 0.5) == 1.0 and deep_weight(6, 7, 0.5) == 0.5
    assert deep_weight(4, 7, 0.5) == 0.125 and deep_weight(3, 7, 0.0) == 0.0


def test_supervised_loss_is_zero_on_its_own_output(gen: Generator) -> None:
    z, labels = torch.randn(2, 6), torch.tensor([1, 3])
    with torch.no_grad():
        target = gen(z, labels)
        outs = crop_forward(gen, z, labels, (30, 38), 5)
    hp = published_hparams()
    weights = {"mag": 1.0, "mag_grad": 1.0, "if": 1.0, "peak": 10.0}
    last_only, parts = supervised_loss(outs, target, hp, weights, deep=0.0)
    assert float(last_only) < 1e-5 and set(parts) == {"mag", "mag_grad", "if"}
    deep, _ = supervised_loss(outs, target, hp, weights, deep=0.5)
    assert float(deep) > 1e-3  # lower heads are untrained: they do not match the pooled target
