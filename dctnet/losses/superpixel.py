"""Superpixel mean-colour images, batched on the training device (the structure representation).

The official recipe compares the output with its SLIC superpixel image (each segment filled with its mean
colour), which asks for flat, cartoon-like regions. Per-image skimage SLIC on the CPU would stall a GPU
step, so this is a batched SLIC-style k-means in torch: seeds on a regular grid, pixels assigned to the
nearest seed in (colour, position) space, segment means recomputed, a few rounds. Why hand-written:
kornia and torchvision have no superpixels, and skimage's SLIC is per image on the CPU.
"""

from __future__ import annotations

import math

import torch


def _grid_seeds(height: int, width: int, segments: int, device: torch.device) -> torch.Tensor:
    """(K, 2) seed positions in [0, 1] on a regular grid with about ``segments`` cells."""
    rows = max(1, round(math.sqrt(segments * height / width)))
    cols = max(1, round(segments / rows))
    ys = (torch.arange(rows, device=device) + 0.5) / rows
    xs = (torch.arange(cols, device=device) + 0.5) / cols
    return torch.cartesian_prod(ys, xs)


@torch.no_grad()
def superpixel_mean(image: torch.Tensor, segments: int = 64, compactness: float = 10.0,
                    iterations: int = 4) -> torch.Tensor:
    """N x C x H x W -> the same images with every superpixel filled with its mean colour (no gradient).

    ``compactness`` weighs position against colour (images in [-1, 1]; larger = squarer segments).
    """
    n, c, h, w = image.shape
    grid = _grid_seeds(h, w, segments, image.device).to(image.dtype)  # K x 2
    k = len(grid)
    ys = torch.linspace(0, 1, h, device=image.device, dtype=image.dtype)
    xs = torch.linspace(0, 1, w, device=image.device, dtype=image.dtype)
    position = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), -1).view(1, h * w, 2)
    spacing = math.sqrt(1.0 / k)  # typical seed distance in [0, 1] units
    weight = compactness / 10.0 / spacing  # SLIC's m/S: position distance in units of the seed spacing
    pixels = torch.cat([image.flatten(2).transpose(1, 2), position.expand(n, -1, -1) * weight], -1)  # N x HW x (C+2)
    # initial centres: the colour at each grid seed
    seed_index = ((grid[:, 0] * (h - 1)).round() * w + (grid[:, 1] * (w - 1)).round()).long()
    centres = pixels[:, seed_index]  # N x K x (C+2)
    for _ in range(iterations):
        labels = torch.cdist(pixels, centres).argmin(-1)  # N x HW
        sums = torch.zeros(n, k, c + 2, device=image.device, dtype=image.dtype)
        sums.scatter_add_(1, labels.unsqueeze(-1).expand(-1, -1, c + 2), pixels)
        counts = torch.zeros(n, k, device=image.device, dtype=image.dtype)
        counts.scatter_add_(1, labels, torch.ones_like(labels, dtype=image.dtype))
        empty = counts == 0
        centres = torch.where(empty.unsqueeze(-1), centres, sums / counts.clamp_min(1).unsqueeze(-1))
    colours = centres[..., :c]  # the means of the segments in ``labels``  # N x K x C
    filled = torch.gather(colours, 1, labels.unsqueeze(-1).expand(-1, -1, c))  # N x HW x C
    return filled.transpose(1, 2).reshape(n, c, h, w)
