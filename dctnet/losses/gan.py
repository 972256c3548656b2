"""Adversarial losses and their regularisers as small pure functions (rosinality / StyleGAN2 style)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import autograd


def _average(per_logit: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Mean over everything, or over images of the ``weights``-weighted sum over each image's logits."""
    if weights is None:
        return per_logit.mean()
    return (per_logit.float() @ weights).mean()


def d_logistic_loss(real_pred: torch.Tensor, fake_pred: torch.Tensor,
                    weights: torch.Tensor | None = None) -> torch.Tensor:
    """Non-saturating discriminator loss: softplus(-D(real)) + softplus(D(fake)).

    ``weights``: one per logit of an ``(N, K)`` prediction, summing to 1 (``Discriminator.logit_weights``).
    """
    return _average(F.softplus(-real_pred), weights) + _average(F.softplus(fake_pred), weights)


def g_nonsaturating_loss(fake_pred: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    return _average(F.softplus(-fake_pred), weights)


def d_r1_loss(real_pred: torch.Tensor, real_img: torch.Tensor) -> torch.Tensor:
    """R1 penalty: squared gradient norm of D at real images (``real_img`` must require grad)."""
    (grad_real,) = autograd.grad(outputs=real_pred.sum(), inputs=real_img, create_graph=True)
    return grad_real.pow(2).reshape(grad_real.shape[0], -1).sum(1).mean()


def g_path_regularize(fake_img: torch.Tensor, latents: torch.Tensor, mean_path_length: torch.Tensor,
                      decay: float = 0.01) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Path length regulariser; returns (penalty, new running mean, mean path length of this batch)."""
    noise = torch.randn_like(fake_img) / math.sqrt(fake_img.shape[2] * fake_img.shape[3])
    (grad,) = autograd.grad(outputs=(fake_img * noise).sum(), inputs=latents, create_graph=True)
    path_lengths = torch.sqrt(grad.pow(2).sum(2).mean(1))
    path_mean = mean_path_length + decay * (path_lengths.mean().detach() - mean_path_length)
    return (path_lengths - path_mean).pow(2).mean(), path_mean.detach(), path_lengths.mean().detach()


def lsgan_d_loss(real_pred: torch.Tensor, fake_pred: torch.Tensor) -> torch.Tensor:
    """Least-squares GAN: D pushes real to 1 and fake to 0 (White-box / DCT-Net use 0.5 * each term)."""
    return 0.5 * ((real_pred - 1).pow(2).mean() + fake_pred.pow(2).mean())


def lsgan_g_loss(fake_pred: torch.Tensor) -> torch.Tensor:
    return (fake_pred - 1).pow(2).mean()


def hinge_d_loss(real_pred: torch.Tensor, fake_pred: torch.Tensor) -> torch.Tensor:
    return F.relu(1 - real_pred).mean() + F.relu(1 + fake_pred).mean()


def hinge_g_loss(fake_pred: torch.Tensor) -> torch.Tensor:
    return -fake_pred.mean()


ADVERSARIAL = {"lsgan": (lsgan_d_loss, lsgan_g_loss), "hinge": (hinge_d_loss, hinge_g_loss),
               "nonsaturating": (d_logistic_loss, g_nonsaturating_loss)}


def adversarial_losses(name: str):
    """(discriminator loss, generator loss) pair by config name."""
    if name not in ADVERSARIAL:
        raise ValueError(f"unknown GAN loss {name!r}; choose one of {sorted(ADVERSARIAL)}")
    return ADVERSARIAL[name]
