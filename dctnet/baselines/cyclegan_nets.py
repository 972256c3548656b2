"""CycleGAN's networks (Zhu et al. 2017, junyanz/pytorch-CycleGAN-and-pix2pix): ResNet generator, 70x70 PatchGAN.

Written here because no maintained pip package ships them as importable modules. The layer recipe is the
reference implementation's (reflection padding, ``InstanceNorm2d(affine=False)``, N(0, 0.02) init), so widths
and depths from its options (``--ngf``, ``--ndf``, ``--netG resnet_9blocks``, ``--n_layers_D``) map one to one.
"""

from __future__ import annotations

import torch
from torch import nn


def _norm(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class ResnetBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), _norm(channels), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), _norm(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class ResnetGenerator(nn.Module):
    """c7s1-ngf, ``downsamples`` stride-2 convs, ``blocks`` residual blocks, as many transposed convs, c7s1-3, tanh."""

    def __init__(self, ngf: int = 64, blocks: int = 9, downsamples: int = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, 7), _norm(ngf), nn.ReLU(True)]
        width = ngf
        for _ in range(downsamples):
            layers += [nn.Conv2d(width, width * 2, 3, stride=2, padding=1), _norm(width * 2), nn.ReLU(True)]
            width *= 2
        layers += [ResnetBlock(width) for _ in range(blocks)]
        for _ in range(downsamples):
            layers += [nn.ConvTranspose2d(width, width // 2, 3, stride=2, padding=1, output_padding=1),
                       _norm(width // 2), nn.ReLU(True)]
            width //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(width, 3, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        self.stride = 2 ** downsamples

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class NLayerDiscriminator(nn.Module):
    """PatchGAN: with ``layers=3`` each output sees a 70x70 patch of the input."""

    def __init__(self, ndf: int = 64, layers: int = 3) -> None:
        super().__init__()
        sequence: list[nn.Module] = [nn.Conv2d(3, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        width = ndf
        for n in range(1, layers + 1):
            previous, width = width, ndf * min(2 ** n, 8)
            stride = 2 if n < layers else 1
            sequence += [nn.Conv2d(previous, width, 4, stride=stride, padding=1), _norm(width), nn.LeakyReLU(0.2, True)]
        sequence.append(nn.Conv2d(width, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*sequence)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def init_weights(module: nn.Module, gain: float = 0.02) -> None:
    """The reference ``init_type=normal``: N(0, 0.02) conv weights, zero biases."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
