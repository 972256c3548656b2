"""Content and smoothness terms of the TTN generator loss."""

from __future__ import annotations

import torch


def content_loss(features_output: torch.Tensor, features_input: torch.Tensor) -> torch.Tensor:
    """Mean L1 between VGG features (= the official L1 sum divided by h*w*c)."""
    return (features_output - features_input).abs().mean()


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """White-box TV: half the mean squared horizontal plus vertical differences."""
    dy = image[:, :, 1:, :] - image[:, :, :-1, :]
    dx = image[:, :, :, 1:] - image[:, :, :, :-1]
    return 0.5 * (dx.pow(2).mean() + dy.pow(2).mean())
