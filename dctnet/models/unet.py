"""The texture translation network (TTN): the White-box cartoonization / DCT-Net U-Net generator.

Default constructor = the official architecture: conv7 -> 32; [conv3 s2 -> 32, conv3 -> 64];
[conv3 s2 -> 64, conv3 -> 128]; 4 residual blocks at 128; conv3 -> 64; bilinear x2 + skip, conv3 -> 64,
conv3 -> 32; bilinear x2 + skip, conv3 -> 32, conv7 -> 3. LeakyReLU 0.2, no normalisation, no tanh;
1,467,075 parameters. Fully convolutional: any size divisible by 2**num_downsamples.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dctnet.losses.representations import guided_filter


def conv(in_channels: int, out_channels: int, kernel: int, stride: int = 1, tf_numerics: bool = False) -> nn.Module:
    if tf_numerics and stride > 1:
        return TFSameConv2d(in_channels, out_channels, kernel, stride)
    return nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2)


class TFSameConv2d(nn.Conv2d):
    """A strided convolution with TensorFlow's SAME padding: the odd pixel of padding goes right and bottom
    (PyTorch's symmetric ``padding=k//2`` samples one pixel to the left of it). Same parameter names as
    ``nn.Conv2d``, so the weights load into either."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int) -> None:
        super().__init__(in_channels, out_channels, kernel, stride=stride, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size in (x.shape[-1], x.shape[-2]):  # F.pad order: last dim first
            kernel, stride = self.kernel_size[0], self.stride[0]
            total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


def tf_legacy_upsample2x(x: torch.Tensor) -> torch.Tensor:
    """TF1's ``tf.image.resize_bilinear`` to twice the size (align_corners=False, half_pixel_centers=False):
    output pixel i samples input i / 2, so even pixels copy the input and odd ones average it with its next
    neighbour (the last one repeated). PyTorch's bilinear mode samples at half-pixel centres instead; the
    released DCT-Net graphs were trained and frozen with this one. Slices only: exports to ONNX at any size."""
    following = torch.cat([x[:, :, 1:], x[:, :, -1:]], 2)
    x = torch.stack([x, (x + following) / 2], 3).flatten(2, 3)
    following = torch.cat([x[..., 1:], x[..., -1:]], 3)
    return torch.stack([x, (x + following) / 2], 4).flatten(3, 4)


class ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1, self.conv2 = conv(channels, channels, 3), conv(channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.leaky_relu(self.conv1(x), 0.2))


class UNetGenerator(nn.Module):
    """Photo in [-1, 1] -> cartoon (unbounded, clamp for display), same size."""

    def __init__(self, base_channels: int = 32, num_residual: int = 4, num_downsamples: int = 2,
                 tf_numerics: bool = False) -> None:
        super().__init__()
        self.base_channels, self.num_residual, self.num_downsamples = base_channels, num_residual, num_downsamples
        self.tf_numerics = tf_numerics  # TF SAME padding and TF1 bilinear resize: an imported official graph
        c = [base_channels * 2**i for i in range(num_downsamples + 1)]
        self.stride = 2**num_downsamples
        self.stem = conv(3, c[0], 7)
        self.down = nn.ModuleList(nn.ModuleList([conv(c[i], c[i], 3, stride=2, tf_numerics=tf_numerics),
                                                 conv(c[i], c[i + 1], 3)])
                                  for i in range(num_downsamples))
        self.blocks = nn.Sequential(*(ResidualBlock(c[-1]) for _ in range(num_residual)))
        self.bottleneck = conv(c[-1], c[-2], 3)
        self.up = nn.ModuleList()
        for i in reversed(range(num_downsamples)):
            layers = [conv(c[i], c[i], 3)]
            if i > 0:
                layers.append(conv(c[i], c[i - 1], 3))
            self.up.append(nn.ModuleList(layers))
        self.head = conv(c[0], 3, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = lambda t: F.leaky_relu(t, 0.2)  # noqa: E731
        skips = [act(self.stem(x))]
        h = skips[0]
        for down_conv, widen in self.down:
            h = act(widen(act(down_conv(h))))
            skips.append(h)
        h = act(self.bottleneck(self.blocks(h)))
        for layers, skip in zip(self.up, reversed(skips[:-1])):
            if self.tf_numerics:  # the official graph resizes to exactly twice the size, as here
                h = tf_legacy_upsample2x(h) + skip
            else:
                h = F.interpolate(h, size=skip.shape[2:], mode="bilinear", align_corners=False) + skip
            for layer in layers:
                h = act(layer(h))
        return self.head(h)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad the bottom/right so H and W are multiples of ``multiple``; returns the original size."""
    height, width = x.shape[2:]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if pad_h or pad_w:
        mode = "reflect" if pad_h < height and pad_w < width else "replicate"
        x = F.pad(x, [0, pad_w, 0, pad_h], mode=mode)
    return x, (height, width)


class TTN(nn.Module):
    """The whole stage-2 model, as training, every inference backend and export run it: U-Net, then the official
    output guided filter (the photo as guide), then, for use, a clamp to [-1, 1].

    The U-Net's weights sit under ``network`` and are exported on their own (``ttn.safetensors`` keys are the
    U-Net's); the filter settings travel in the file's ``arch`` header. Free of the training stack, so that
    inference does not import Lightning.
    """

    def __init__(self, base_channels: int = 32, num_residual: int = 4, num_downsamples: int = 2,
                 output_guided_filter: bool = True, guided_filter_radius: int = 1, guided_filter_eps: float = 1e-2,
                 tf_numerics: bool = False) -> None:
        super().__init__()
        self.network = UNetGenerator(base_channels, num_residual, num_downsamples, tf_numerics)
        # tf_numerics: the released TF graphs' arithmetic (dctnet.models.official_import): SAME padding, TF1
        # bilinear resize, and a box filter averaging only the pixels inside the image (zero padding / count)
        self.tf_numerics = tf_numerics
        self.output_guided_filter = output_guided_filter
        self.guided_filter_radius, self.guided_filter_eps = guided_filter_radius, guided_filter_eps
        self.stride = self.network.stride

    def arch(self) -> dict[str, int | float | bool]:
        """The constructor arguments (the model file's ``arch`` header)."""
        network = self.network
        return {"base_channels": network.base_channels, "num_residual": network.num_residual,
                "num_downsamples": network.num_downsamples, "output_guided_filter": self.output_guided_filter,
                "guided_filter_radius": self.guided_filter_radius, "guided_filter_eps": self.guided_filter_eps,
                **({"tf_numerics": True} if self.tf_numerics else {})}

    def refine(self, photo: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
        """The output filter alone, in fp32 (it divides by local variances; ``guided_filter`` upcasts itself)."""
        if not self.output_guided_filter:
            return raw
        return guided_filter(photo, raw, radius=self.guided_filter_radius, eps=self.guided_filter_eps,
                             border="valid" if self.tf_numerics else "reflect")

    def forward(self, photo: torch.Tensor, clamp: bool = True) -> torch.Tensor:
        """Photo in [-1, 1] -> cartoon; ``clamp=False`` for training losses (gradients beyond the range)."""
        out = self.refine(photo, self.network(photo))
        return out.clamp(-1, 1) if clamp else out
