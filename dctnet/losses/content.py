"""Content and smoothness terms of the TTN generator loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F


CONTENT_NORMS = ("none", "instance")


def content_loss(features_output: torch.Tensor, features_input: torch.Tensor, norm: str = "none") -> torch.Tensor:
    """Mean L1 between VGG features (= the official L1 sum divided by h*w*c).

    ``norm="instance"`` first normalises each feature map to zero mean and unit variance over space, so the
    loss keeps the layout (where edges and parts are) but not each channel's global level; this frees the
    palette for the discriminators when the features are shallow or random (as in the CPU demo), where raw
    features are nearly linear in the input colours and would pin them.
    """
    if norm == "instance":
        features_output, features_input = F.instance_norm(features_output), F.instance_norm(features_input)
    elif norm != "none":
        raise ValueError(f"content norm must be one of {CONTENT_NORMS}, got {norm!r}")
    return (features_output - features_input).abs().mean()


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """White-box TV: half the mean squared horizontal plus vertical differences."""
    dy = image[:, :, 1:, :] - image[:, :, :-1, :]
    dx = image[:, :, :, 1:] - image[:, :, :, :-1]
    return 0.5 * (dx.pow(2).mean() + dy.pow(2).mean())
