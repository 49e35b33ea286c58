"""GANSynth's losses (tfgan's Wasserstein losses with gradient penalty, Magenta's drift penalty
and auxiliary pitch classifier), on stage-resolution images (:mod:`ganspace.train.schedule`).

``L_G = -mean(D(G(z, c))) + generator_ac_loss_weight * CE(cls(G(z, c)), c)``;
``L_D = mean(D(fake)) - mean(D(real)) + gradient_penalty_weight * mean((|grad D(x_hat)| /
target - 1)^2) + real_score_penalty_weight * mean(D(real)^2) + discriminator_ac_loss_weight *
CE(cls(real), c_real)`` with ``x_hat`` a uniform random interpolate of real and fake. The
gradient penalty's norm is divided by the pooling factor of the stage images, which gives its
value with respect to the full-resolution interpolate (pooling by s x s scales a gradient's norm
by 1 / s).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ganspace.train.discriminator import Discriminator


@dataclass
class DiscriminatorLoss:
    """The discriminator's loss and its terms (scalar tensors; ``total`` has a graph)."""

    total: Tensor
    wasserstein: Tensor  # mean(D(fake)) - mean(D(real))
    gradient_penalty: Tensor
    drift: Tensor  # mean(D(real)^2)
    ac: Tensor  # cross-entropy of the pitch classifier on real images
    real_score: Tensor  # mean(D(real))
    fake_score: Tensor  # mean(D(fake))


def generator_loss(disc: Discriminator, fake: Tensor, labels: Tensor, progress: float,
                   hparams: dict[str, Any]) -> tuple[Tensor, Tensor]:
    """``L_G`` of generated images.

    Args:
        disc: the discriminator (freeze its parameters for the generator step).
        fake: [B, 2, H, W] generator output at stage resolution, with its graph.
        labels: [B] pitch classes the images were generated for.
        progress: training progress.
        hparams: for ``generator_ac_loss_weight``.
    Returns:
        (``L_G``, the auxiliary classifier's cross-entropy), scalar tensors.
    """
    score, cls = disc(fake, progress)
    ac = F.cross_entropy(cls, labels)
    return -score.mean() + float(hparams["generator_ac_loss_weight"]) * ac, ac


def discriminator_loss(disc: Discriminator, real: Tensor, real_labels: Tensor, fake: Tensor,
                       eps: Tensor, progress: float, pool: int,
                       hparams: dict[str, Any]) -> DiscriminatorLoss:
    """``L_D`` of a real and a generated batch.

    Args:
        disc: the discriminator.
        real: [B, 2, H, W] real images at stage resolution (``blend_images``).
        real_labels: [B] their pitch classes.
        fake: [B, 2, H, W] generated images at stage resolution (no graph needed).
        eps: [B, 1, 1, 1] uniform interpolation weights for the gradient penalty.
        progress: training progress.
        pool: the factor the stage images are average-pooled by (1 at full resolution).
        hparams: ``gradient_penalty_target``, ``gradient_penalty_weight``,
            ``real_score_penalty_weight``, ``discriminator_ac_loss_weight``.
    """
    d_real, cls_real = disc(real, progress)
    d_fake, _ = disc(fake, progress)
    interp = (real + eps * (fake - real)).requires_grad_(True)
    d_interp, _ = disc(interp, progress)
    (grad,) = torch.autograd.grad(d_interp.sum(), interp, create_graph=True)
    slopes = torch.sqrt(grad.square().sum(dim=(1, 2, 3)) / pool**2 + 1e-10)
    target = float(hparams["gradient_penalty_target"])
    gp = (slopes / target - 1.0).square().mean()
    wass = d_fake.mean() - d_real.mean()
    drift = d_real.square().mean()
    ac = F.cross_entropy(cls_real, real_labels)
    total = (wass + float(hparams["gradient_penalty_weight"]) * gp
             + float(hparams["real_score_penalty_weight"]) * drift
             + float(hparams["discriminator_ac_loss_weight"]) * ac)
    return DiscriminatorLoss(total, wass, gp, drift, ac, d_real.mean(), d_fake.mean())
