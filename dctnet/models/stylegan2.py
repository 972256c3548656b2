"""StyleGAN2 generator and discriminator in pure PyTorch, parameter-compatible with rosinality/stylegan2-pytorch.

Module names, parameter names and shapes follow that project, so its checkpoints
(``{'g', 'd', 'g_ema', 'latent_avg', ...}``) load with ``strict=True``; the constructor arguments
(``size, style_dim, n_mlp, channel_multiplier``) and the call convention
(``g([z], randomize_noise=False) -> (image, latent)``) are the same. The custom CUDA ops of that
project (fused leaky ReLU, upfirdn2d) are replaced by their PyTorch reference formulas: nothing to
compile, same results. One addition: ``channel_max`` (512 there) lets tests build narrow models.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

BLUR_KERNEL = (1, 3, 3, 1)


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor | None, negative_slope: float = 0.2,
                     scale: float = 2**0.5) -> torch.Tensor:
    """Bias + leaky ReLU + gain (rosinality's fused op)."""
    if bias is not None:
        x = x + bias.view(1, -1, *([1] * (x.ndim - 2)))
    return F.leaky_relu(x, negative_slope) * scale


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Upsample by zero insertion, pad (negative = crop), FIR-filter with ``kernel``, downsample."""
    batch, channels, height, width = x.shape
    if up > 1:
        x = x.reshape(batch, channels, height, 1, width, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(batch, channels, height * up, width * up)
    p0, p1 = pad
    x = F.pad(x, [max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)])
    x = x[:, :, max(-p0, 0) : x.shape[2] - max(-p1, 0), max(-p0, 0) : x.shape[3] - max(-p1, 0)]
    weight = torch.flip(kernel, [0, 1]).to(x.dtype)[None, None].repeat(channels, 1, 1, 1)
    x = F.conv2d(x, weight, groups=channels)
    return x[:, :, ::down, ::down]


def make_kernel(k: Sequence[float]) -> torch.Tensor:
    kernel = torch.tensor(k, dtype=torch.float32)
    if kernel.ndim == 1:
        kernel = kernel[None, :] * kernel[:, None]
    return kernel / kernel.sum()


class PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x**2, dim=1, keepdim=True) + 1e-8)


class Upsample(nn.Module):
    def __init__(self, kernel: Sequence[float], factor: int = 2) -> None:
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(kernel) * factor**2)
        p = self.kernel.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class Blur(nn.Module):
    def __init__(self, kernel: Sequence[float], pad: tuple[int, int], upsample_factor: int = 1) -> None:
        super().__init__()
        weight = make_kernel(kernel)
        if upsample_factor > 1:
            weight = weight * upsample_factor**2
        self.register_buffer("kernel", weight)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class EqualConv2d(nn.Module):
    """Conv with equalised learning rate: weights stored N(0,1), scaled at run time."""

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channel, in_channel, kernel_size, kernel_size))
        self.scale = 1 / math.sqrt(in_channel * kernel_size**2)
        self.stride, self.padding = stride, padding
        self.bias = nn.Parameter(torch.zeros(out_channel)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, bias=self.bias, stride=self.stride, padding=self.padding)


class EqualLinear(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, bias: bool = True, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activation: str | None = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.zeros(out_dim).fill_(bias_init)) if bias else None
        self.activation = activation
        self.scale = (1 / math.sqrt(in_dim)) * lr_mul
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias * self.lr_mul if self.bias is not None else None
        if self.activation:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), bias)
        return F.linear(x, self.weight * self.scale, bias=bias)


class FusedLeakyReLU(nn.Module):
    def __init__(self, channel: int, bias: bool = True) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channel)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias)


class ModulatedConv2d(nn.Module):
    """Style-modulated (and demodulated) convolution, as grouped convolution over the batch."""

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int, demodulate: bool = True,
                 upsample: bool = False, downsample: bool = False,
                 blur_kernel: Sequence[float] = BLUR_KERNEL) -> None:
        super().__init__()
        self.kernel_size, self.in_channel, self.out_channel = kernel_size, in_channel, out_channel
        self.upsample, self.downsample, self.demodulate = upsample, downsample, demodulate
        factor = 2
        if upsample:
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        if downsample:
            p = (len(blur_kernel) - factor) + (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2, p // 2))
        self.scale = 1 / math.sqrt(in_channel * kernel_size**2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channel, in_channel, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        # Modulate the activations, convolve with the shared weight, demodulate the outputs: the same
        # result as the per-sample grouped convolution, ~25 % faster on CPU (rosinality's fused=False,
        # StyleGAN2-ADA's training path). fp32 by default; under fp16 the activations may need scaling.
        batch, in_channel = x.shape[:2]
        weight = self.scale * self.weight.squeeze(0)
        style = self.modulation(style)
        x = x * style.reshape(batch, in_channel, 1, 1)
        if self.upsample:
            out = self.blur(F.conv_transpose2d(x, weight.transpose(0, 1), padding=0, stride=2))
        elif self.downsample:
            out = F.conv2d(self.blur(x), weight, padding=0, stride=2)
        else:
            out = F.conv2d(x, weight, padding=self.padding)
        if self.demodulate:
            coefficients = ((weight.unsqueeze(0) * style.view(batch, 1, in_channel, 1, 1)).square().sum((2, 3, 4))
                            + 1e-8).rsqrt()
            out = out * coefficients.view(batch, -1, 1, 1)
        return out


class NoiseInjection(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, image: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if noise is None:
            batch, _, height, width = image.shape
            noise = image.new_empty(batch, 1, height, width).normal_()
        return image + self.weight * noise


class ConstantInput(nn.Module):
    def __init__(self, channel: int, size: int = 4) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channel, size, size))

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.input.repeat(latent.shape[0], 1, 1, 1)


class StyledConv(nn.Module):
    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int, upsample: bool = False,
                 blur_kernel: Sequence[float] = BLUR_KERNEL, demodulate: bool = True) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channel, out_channel, kernel_size, style_dim, demodulate=demodulate,
                                    upsample=upsample, blur_kernel=blur_kernel)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channel)

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        return self.activate(self.noise(self.conv(x, style), noise=noise))


class ToRGB(nn.Module):
    def __init__(self, in_channel: int, style_dim: int, upsample: bool = True,
                 blur_kernel: Sequence[float] = BLUR_KERNEL) -> None:
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, style) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out


def channel_table(channel_multiplier: int, channel_max: int | None = None) -> dict[int, int]:
    """rosinality's channels per resolution (512 up to 32 px, then 16384*m/res), optionally capped."""
    table = {2**i: 512 if 2**i <= 32 else 16384 * channel_multiplier // 2**i for i in range(2, 11)}
    return {res: min(c, channel_max) if channel_max else c for res, c in table.items()}


class Generator(nn.Module):
    """StyleGAN2 generator: mapping network ``style``, synthesis ``input/conv1/to_rgb1/convs/to_rgbs``."""

    def __init__(self, size: int, style_dim: int, n_mlp: int, channel_multiplier: int = 2,
                 blur_kernel: Sequence[float] = BLUR_KERNEL, lr_mlp: float = 0.01, channel_max: int | None = None) -> None:
        super().__init__()
        if size < 4 or size & (size - 1):
            raise ValueError(f"StyleGAN2 size must be a power of two >= 4, got {size}")
        self.size, self.style_dim = size, style_dim
        self.style = nn.Sequential(
            PixelNorm(), *(EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation="fused_lrelu") for _ in range(n_mlp))
        )
        self.channels = channel_table(channel_multiplier, channel_max)
        self.input = ConstantInput(self.channels[4])
        self.conv1 = StyledConv(self.channels[4], self.channels[4], 3, style_dim, blur_kernel=blur_kernel)
        self.to_rgb1 = ToRGB(self.channels[4], style_dim, upsample=False)
        self.log_size = int(math.log2(size))
        self.num_layers = (self.log_size - 2) * 2 + 1
        self.convs, self.upsamples, self.to_rgbs = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        self.noises = nn.Module()
        for layer_idx in range(self.num_layers):
            res = (layer_idx + 5) // 2
            self.noises.register_buffer(f"noise_{layer_idx}", torch.randn(1, 1, 2**res, 2**res))
        in_channel = self.channels[4]
        for i in range(3, self.log_size + 1):
            out_channel = self.channels[2**i]
            self.convs.append(StyledConv(in_channel, out_channel, 3, style_dim, upsample=True, blur_kernel=blur_kernel))
            self.convs.append(StyledConv(out_channel, out_channel, 3, style_dim, blur_kernel=blur_kernel))
            self.to_rgbs.append(ToRGB(out_channel, style_dim))
            in_channel = out_channel
        self.n_latent = self.log_size * 2 - 2

    def make_noise(self) -> list[torch.Tensor]:
        device = self.input.input.device
        noises = [torch.randn(1, 1, 4, 4, device=device)]
        for i in range(3, self.log_size + 1):
            noises += [torch.randn(1, 1, 2**i, 2**i, device=device) for _ in range(2)]
        return noises

    @torch.no_grad()
    def mean_latent(self, n_latent: int) -> torch.Tensor:
        z = torch.randn(n_latent, self.style_dim, device=self.input.input.device)
        return self.style(z).mean(0, keepdim=True)

    def get_latent(self, z: torch.Tensor) -> torch.Tensor:
        return self.style(z)

    def latent_layers(self) -> list[tuple[int, list[nn.Module]]]:
        """For each W+ latent index: the synthesis modules that read it and their resolution.

        Used by layer blending: index 0 -> conv1 (4 px), 1 -> to_rgb1 (4 px), then per resolution
        the up-conv, the conv and the toRGB.
        """
        table: list[tuple[int, list[nn.Module]]] = [(4, [self.conv1]), (4, [self.to_rgb1])]
        for k, res in enumerate(2**i for i in range(3, self.log_size + 1)):
            table.append((res, [self.convs[2 * k]]))
            table.append((res, [self.convs[2 * k + 1]]))
            table.append((res, [self.to_rgbs[k]]))
        return table

    def forward(self, styles: list[torch.Tensor], return_latents: bool = False, inject_index: int | None = None,
                truncation: float = 1.0, truncation_latent: torch.Tensor | None = None, input_is_latent: bool = False,
                noise: list[torch.Tensor | None] | None = None,
                randomize_noise: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        if not input_is_latent:
            styles = [self.style(s) for s in styles]
        if noise is None:
            noise = [None] * self.num_layers if randomize_noise else [
                getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]
        if truncation < 1:
            if truncation_latent is None:
                raise ValueError("truncation < 1 needs truncation_latent (g.mean_latent(4096))")
            styles = [truncation_latent + truncation * (s - truncation_latent) for s in styles]
        latent = self.broadcast_latents(styles, inject_index)
        return self.synthesis(latent, noise), (latent if return_latents else None)

    def broadcast_latents(self, styles: list[torch.Tensor], inject_index: int | None = None) -> torch.Tensor:
        """W latents (1 or 2 for style mixing, or one W+) -> W+ (N x n_latent x style_dim)."""
        if len(styles) < 2:
            return styles[0] if styles[0].ndim == 3 else styles[0].unsqueeze(1).repeat(1, self.n_latent, 1)
        if inject_index is None:
            inject_index = random.randint(1, self.n_latent - 1)
        return torch.cat([styles[0].unsqueeze(1).repeat(1, inject_index, 1),
                          styles[1].unsqueeze(1).repeat(1, self.n_latent - inject_index, 1)], 1)

    def synthesis(self, latent: torch.Tensor, noise: list[torch.Tensor | None]) -> torch.Tensor:
        """W+ latents (N x n_latent x style_dim) -> image."""
        # channels_last: oneDNN's convolutions skip their layout reorders. A stage-1 iteration in bf16 on a 2-core Xeon
        # with AMX: 64 px (experiment=learning) 481-541 ms against 590-674, 32 px (demo) 140-162 against 161-193.
        # The layout follows through every layer; the values are the same up to the convolutions' rounding.
        out = self.input(latent).contiguous(memory_format=torch.channels_last)
        out = self.conv1(out, latent[:, 0], noise=noise[0])
        skip = self.to_rgb1(out, latent[:, 1])
        i = 1
        for conv1, conv2, noise1, noise2, to_rgb in zip(self.convs[::2], self.convs[1::2], noise[1::2], noise[2::2],
                                                        self.to_rgbs):
            out = conv1(out, latent[:, i], noise=noise1)
            out = conv2(out, latent[:, i + 1], noise=noise2)
            skip = to_rgb(out, latent[:, i + 2], skip)
            i += 2
        return skip


class ConvLayer(nn.Sequential):
    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, downsample: bool = False,
                 blur_kernel: Sequence[float] = BLUR_KERNEL, bias: bool = True, activate: bool = True) -> None:
        layers: list[nn.Module] = []
        if downsample:
            p = (len(blur_kernel) - 2) + (kernel_size - 1)
            layers.append(Blur(blur_kernel, pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(EqualConv2d(in_channel, out_channel, kernel_size, padding=padding, stride=stride,
                                  bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_channel, bias=bias))
        super().__init__(*layers)


class ResBlock(nn.Module):
    def __init__(self, in_channel: int, out_channel: int, blur_kernel: Sequence[float] = BLUR_KERNEL) -> None:
        super().__init__()
        self.conv1 = ConvLayer(in_channel, in_channel, 3)
        self.conv2 = ConvLayer(in_channel, out_channel, 3, downsample=True)
        self.skip = ConvLayer(in_channel, out_channel, 1, downsample=True, activate=False, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)


class Discriminator(nn.Module):
    """StyleGAN2 residual discriminator with minibatch standard deviation.

    ``patch_resolution``: judge ``r x r`` patches instead of the whole image: one logit per position of the
    ``r`` px feature map (a 1x1 ``patch_head``; each sees a receptive field of a fraction of the image), the
    layers below ``r`` px unused. Few-shot adaptation uses it so that the ~100 exemplars' texture is learnt
    without their global layout (the patch-level realism of Ojha et al., CVPR 2021). rosinality's parameter
    names are kept, so a whole-image D's weights load into it (``patch_head`` then starts fresh).
    ``image_weight`` (patch D only, 0 = patches only): the whole-image logit is judged too and weighs this much
    in the per-image score (``score``, which the losses use), the patch logits share the rest. So a patch D can
    still ask for globally plausible faces, as weakly as the weight says.
    """

    def __init__(self, size: int, channel_multiplier: int = 2, blur_kernel: Sequence[float] = BLUR_KERNEL,
                 channel_max: int | None = None, patch_resolution: int | None = None,
                 image_weight: float = 0.0) -> None:
        super().__init__()
        channels = channel_table(channel_multiplier, channel_max)
        if patch_resolution is not None and patch_resolution not in [2**i for i in range(2, int(math.log2(size)) + 1)]:
            raise ValueError(f"patch_resolution must be a power of two from 4 to {size}, got {patch_resolution}")
        if image_weight and (patch_resolution is None or not 0 < image_weight < 1):
            raise ValueError(f"image_weight needs a patch_resolution and must lie in (0, 1), got {image_weight}")
        self.size, self.patch_resolution, self.image_weight = size, patch_resolution, float(image_weight)
        convs: list[nn.Module] = [ConvLayer(3, channels[size], 1)]
        in_channel = channels[size]
        for i in range(int(math.log2(size)), 2, -1):
            out_channel = channels[2 ** (i - 1)]
            convs.append(ResBlock(in_channel, out_channel, blur_kernel))
            in_channel = out_channel
        self.convs = nn.Sequential(*convs)
        self.stddev_group, self.stddev_feat = 4, 1
        self.final_conv = ConvLayer(in_channel + 1, channels[4], 3)
        self.final_linear = nn.Sequential(EqualLinear(channels[4] * 4 * 4, channels[4], activation="fused_lrelu"),
                                          EqualLinear(channels[4], 1))
        weights = torch.ones(1)
        if patch_resolution is not None:
            self.patch_head = ConvLayer(channels[patch_resolution], 1, 1, activate=False)
            weights = torch.full((patch_resolution ** 2,), (1 - self.image_weight) / patch_resolution ** 2)
            if self.image_weight:
                weights = torch.cat([torch.tensor([self.image_weight]), weights])
        # weight of each logit ``forward`` returns in the per-image score (sum 1); fixed by the architecture, so
        # built once and kept out of the state dict (rosinality's names and strict loading stay as they were)
        self.logit_weights: torch.Tensor
        self.register_buffer("logit_weights", weights, persistent=False)

    def score(self, logits: torch.Tensor) -> torch.Tensor:
        """``(N,)`` per-image score: the ``logit_weights``-weighted sum of ``forward``'s logits."""
        return logits.float() @ self.logit_weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 1)`` image logits, or ``(N, r*r)`` patch logits with ``patch_resolution`` r (``(N, 1 + r*r)``,
        the image logit first, with ``image_weight``)."""
        x = x.contiguous(memory_format=torch.channels_last)  # as the generator's, for oneDNN (``Generator.synthesis``)
        if self.patch_resolution is not None:
            depth = int(math.log2(self.size // self.patch_resolution)) + 1  # the 1x1 input conv, then halvings
            features = self.convs[:depth](x)
            patches = self.patch_head(features).flatten(1)
            if not self.image_weight:
                return patches
            return torch.cat([self._image_logit(self.convs[depth:](features)), patches], 1)
        return self._image_logit(self.convs(x))

    def _image_logit(self, out: torch.Tensor) -> torch.Tensor:
        """Minibatch stddev, final conv and linear layers on the 4 px features: ``(N, 1)``."""
        batch, channel, height, width = out.shape
        # largest group <= 4 that divides the batch (rosinality requires divisibility and crashes otherwise)
        group = max(g for g in range(1, min(batch, self.stddev_group) + 1) if batch % g == 0)
        stddev = out.reshape(group, -1, self.stddev_feat, channel // self.stddev_feat, height, width)
        stddev = torch.sqrt(stddev.var(0, unbiased=False) + 1e-8)
        stddev = stddev.mean([2, 3, 4], keepdim=True).squeeze(2).repeat(group, 1, height, width)
        out = self.final_conv(torch.cat([out, stddev], 1))
        return self.final_linear(out.reshape(batch, -1))
