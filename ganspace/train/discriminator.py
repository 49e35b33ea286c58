"""GANSynth's progressive discriminator in PyTorch, mirroring Magenta's ``networks.discriminator``
plus GANSynth's auxiliary pitch classifier (``network_functions.discriminator_fn_specgram``).

Layout is NCHW: ``[B, 2, H, W]`` (H = time frames, W = mel bins), the generator's layout. Weights
are stored unscaled and scaled at run time (equalized learning rate), like the generator.

Structure for blocks k = num_blocks .. 1 (channels ``C(k)`` from the generator's formula):

- ``from_rgb_k``: 1x1 conv 2 -> C(k), leaky ReLU 0.2, applied to the input box-downscaled
  (average-pooled) to block k's resolution;
- block k > 1: conv0 3x3 C(k) -> C(k), conv1 3x3 C(k) -> C(k-1) (leaky ReLU each), average-pool
  x2, then ``x = alpha_k * from_rgb_{k-1}(input) + (1 - alpha_k) * x`` with
  ``alpha_k = clip((k - 1) - progress, 0, 1)`` (Magenta's ``_discriminator_alpha(k - 1, p)``);
- block 1: append the minibatch standard deviation (one scalar as an extra channel), conv0 3x3
  C(1) + 1 -> C(1), conv1 ``start_h x start_w`` VALID -> C(0), then two dense heads: the
  Wasserstein score ``[B]`` and the pitch-class logits ``[B, num_pitches]``.

The discriminator accepts an image at any block resolution ``>=`` the one the progress needs
(blocks above the input's resolution are skipped): feeding the real data average-pooled to the
current stage's resolution and the generator output pooled the same way gives exactly Magenta's
result at full resolution, because Magenta's discriminator only looks at box-downscaled copies.
"""

from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganspace.engine.generator import EqConv2d, GeneratorConfig, he_scale


class EqDense(nn.Module):
    """Magenta's ``custom_dense`` (He slope 1): ``x @ W * sqrt(1 / fan_in) + b``; W unscaled."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.scale = he_scale(cin, 1, 1, 1.0)

    def forward(self, x: Tensor) -> Tensor:
        """x: [B, cin] -> [B, cout]."""
        return F.linear(x, self.weight * self.scale, self.bias)


def minibatch_stddev(x: Tensor) -> Tensor:
    """Magenta's ``scalar_concat(x, minibatch_mean_stddev(x))``: the mean over features of the
    per-feature standard deviation across the batch, appended as one constant channel.

    Args:
        x: [B, C, H, W].
    Returns:
        [B, C + 1, H, W].
    """
    std = torch.sqrt(x.var(dim=0, unbiased=False) + 1e-6).mean()
    return torch.cat([x, std.expand(x.shape[0], 1, *x.shape[2:])], dim=1)


class DBlock(nn.Module):
    """One discriminator block (see module docstring)."""

    def __init__(self, cfg: GeneratorConfig, block: int) -> None:
        super().__init__()
        c, k = cfg.channels(block), cfg.kernel_size
        self.from_rgb = EqConv2d(2, c, 1, 1, 0.0, 0)
        if block == 1:
            self.conv0 = EqConv2d(c + 1, c, k, k, 0.0, k // 2)
            self.conv1 = EqConv2d(c, cfg.channels(0), cfg.start_height, cfg.start_width, 0.0, 0)
        else:
            self.conv0 = EqConv2d(c, c, k, k, 0.0, k // 2)
            self.conv1 = EqConv2d(c, cfg.channels(block - 1), k, k, 0.0, k // 2)


class Discriminator(nn.Module):
    """Progressive GANSynth discriminator with auxiliary pitch classifier.

    ``state_dict`` names: ``blocks.{k-1}.{from_rgb,conv0,conv1}.{weight,bias}`` (k = 1..num_blocks),
    ``logits.{weight,bias}``, ``classifier.{weight,bias}``.
    """

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.blocks = nn.ModuleList(DBlock(cfg, k) for k in range(1, cfg.num_blocks + 1))
        self.logits = EqDense(cfg.channels(0), 1)
        self.classifier = EqDense(cfg.channels(0), cfg.num_pitches)

    def block(self, k: int) -> DBlock:
        """Block k (1-based)."""
        return cast(DBlock, self.blocks[k - 1])

    def _block_of(self, x: Tensor) -> int:
        """The block whose resolution equals the height/width of x [B, 2, H, W]."""
        for k in range(1, self.cfg.num_blocks + 1):
            if self.cfg.resolution(k) == tuple(x.shape[-2:]):
                return k
        raise ValueError(f"input size {list(x.shape[-2:])} is no block resolution")

    def forward(self, x: Tensor, progress: float) -> tuple[Tensor, Tensor]:
        """Score images.

        Args:
            x: [B, 2, H, W] normalised mel-IF images at the resolution of some block ``top``
               (block ``top`` must be at least ``ceil(progress) + 1``, the highest one in use).
            progress: training progress in [0, num_blocks - 1].
        Returns:
            ``(score [B], class_logits [B, num_pitches])``.
        """
        top = self._block_of(x)
        need = min(self.cfg.num_blocks, math.ceil(progress) + 1)
        if top < need:
            raise ValueError(f"progress {progress} needs block {need}, input is block {top}")
        # Blocks above `need` would be replaced by their lower neighbour's from_rgb (alpha 1).
        def rgb_at(k: int) -> Tensor:
            """from_rgb of the input box-downscaled to block k's resolution."""
            img = F.avg_pool2d(x, 2 ** (top - k)) if top > k else x
            return F.leaky_relu(self.block(k).from_rgb(img), 0.2)

        h = rgb_at(need)
        for k in range(need, 1, -1):
            b = self.block(k)
            h = F.leaky_relu(b.conv0(h), 0.2)
            h = F.avg_pool2d(F.leaky_relu(b.conv1(h), 0.2), 2)
            alpha = min(max((k - 1) - progress, 0.0), 1.0)
            if alpha > 0.0:
                h = alpha * rgb_at(k - 1) + (1.0 - alpha) * h
        b = self.block(1)
        h = minibatch_stddev(h)
        h = F.leaky_relu(b.conv0(h), 0.2)
        h = F.leaky_relu(b.conv1(h), 0.2).flatten(1)
        return self.logits(h).squeeze(1), self.classifier(h)
