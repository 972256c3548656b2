"""Spectral-norm PatchGAN (White-box / DCT-Net): pairs of conv3 s2 + conv3 s1 per width, 1x1 head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm


class PatchDiscriminator(nn.Module):
    """Image (``in_channels``) -> map of real/fake scores, one per receptive-field patch."""

    def __init__(self, in_channels: int, channels: list[int] | tuple[int, ...]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        previous = in_channels
        for width in channels:
            layers += [spectral_norm(nn.Conv2d(previous, width, 3, stride=2, padding=1)), nn.LeakyReLU(0.2),
                       spectral_norm(nn.Conv2d(width, width, 3, padding=1)), nn.LeakyReLU(0.2)]
            previous = width
        layers.append(spectral_norm(nn.Conv2d(previous, 1, 1)))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class AttributeRegressor(nn.Module):
    """Small spectral-norm CNN: face image -> facial attributes (e.g. eye and mouth openness) in [0, 1].

    The facial perception loss trains it on photos with known attributes and asks the stylized output
    to show the same attributes as its input (the expression loss of the MIT PyTorch port of DCT-Net; the
    labels come from the photo folder's ``attributes.csv``, which ``dctnet synth`` writes).
    """

    def __init__(self, outputs: int = 2, channels: tuple[int, ...] = (16, 32, 64, 64)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        previous = 3
        for width in channels:
            layers += [spectral_norm(nn.Conv2d(previous, width, 3, stride=2, padding=1)), nn.LeakyReLU(0.2)]
            previous = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(previous, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.head(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)))
