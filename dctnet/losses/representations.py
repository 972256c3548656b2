"""The image representations the TTN discriminators and generator see (White-box cartoonization).

- surface: the image guided-filtered by itself (edge-preserving smoothing, r=5, eps=0.2) -> flat regions;
- texture: a random grey conversion (random channel weights shared by real and fake) -> strokes/edges;
- the generator output is guided-filtered with the input photo as guide (r=1, eps=1e-2).
The guided filter is written here (a few lines of box filters): kornia's ``guided_blur`` with a
3-channel guide computes the colour-covariance variant of He et al., not the per-channel filter the
official code uses, and is ~4x slower at training sizes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dctnet.precision import full_precision

# Official ranges are given for B, G, R channel weights; stored here in R, G, B order.
GREY_WEIGHT_RANGES = ((0.199, 0.399), (0.487, 0.687), (0.014, 0.214))


def box_filter(x: torch.Tensor, radius: int, border: str = "reflect") -> torch.Tensor:
    """Mean over a (2r+1)^2 window, reflect-padded so the border is not darkened; ``border="valid"`` averages
    only the window's pixels inside the image instead (the official TF code: zero padding divided by the count).

    Running sums (a cumulative sum along rows, then columns; each window is the difference of two sums): O(1)
    reads per pixel whatever the radius. Written by hand because no package has a differentiable one: pooling
    with stride 1 (the previous code, separable) was about a fifth of a learning-benchmark TTN iteration on CPU
    in the profiler, and this is 4x faster forward and backward at r=5, 64 px (benchmarks/box_filter.py).
    """
    if border not in ("reflect", "valid"):
        raise ValueError(f"border must be 'reflect' or 'valid', got {border!r}")
    # Centred first: running sums of positive values (a guide's square) grow with the image and, in fp32, lost
    # 2e-5 of each window's mean at 1024 px; the mean of a constant is the constant, so this changes nothing else.
    offset = x.mean(dim=(-2, -1), keepdim=True).detach()
    if border == "valid":  # zero padding, divided by the pixels inside
        height, width = x.shape[-2:]
        padded = F.pad(x - offset, [radius] * 4)
        count = _window_counts(height, radius, x)[:, None] * _window_counts(width, radius, x)
    else:
        mode = "reflect" if radius < min(x.shape[-2:]) else "replicate"
        padded, count = F.pad(x - offset, [radius] * 4, mode=mode), (2 * radius + 1) ** 2
    return _window_sums(_window_sums(padded, radius, -1), radius, -2) / count + offset


def _window_sums(padded: torch.Tensor, radius: int, dim: int) -> torch.Tensor:
    """Sums of every 2r+1 consecutive values along ``dim`` of a tensor padded by r on both sides there."""
    size = 2 * radius + 1
    running = F.pad(padded.cumsum(dim), [1, 0] if dim == -1 else [0, 0, 1, 0])
    length = padded.shape[dim] - size + 1
    return running.narrow(dim, size, length) - running.narrow(dim, 0, length)


def _window_counts(length: int, radius: int, like: torch.Tensor) -> torch.Tensor:
    """How many of a centred 2r+1 window's positions fall inside [0, length), per position."""
    position = torch.arange(length, device=like.device)
    return ((position + radius).clamp(max=length - 1) - (position - radius).clamp(min=0) + 1).to(like.dtype)


def guided_filter(guide: torch.Tensor, image: torch.Tensor, radius: int, eps: float,
                  border: str = "reflect") -> torch.Tensor:
    """Per-channel guided filter (He et al.) of ``image`` steered by ``guide`` (same shape), differentiable.

    Always fp32, also under bf16 autocast: the variance E[g^2] - E[g]^2 cancels catastrophically with bf16's
    7-bit mantissa, and ``a = cov / (var + eps)`` then amplifies the error.
    """
    with full_precision(True, guide.device):
        return _guided_filter(guide.float(), image.float(), radius, eps, border)


def _guided_filter(guide: torch.Tensor, image: torch.Tensor, radius: int, eps: float,
                   border: str = "reflect") -> torch.Tensor:
    box = lambda t: box_filter(t, radius, border)  # noqa: E731
    mean_guide, mean_image = box(guide), box(image)
    covariance = box(guide * image) - mean_guide * mean_image
    variance = box(guide * guide) - mean_guide * mean_guide
    a = covariance / (variance + eps)
    b = mean_image - a * mean_guide
    return box(a) * guide + box(b)


def surface(image: torch.Tensor, radius: int = 5, eps: float = 0.2) -> torch.Tensor:
    return guided_filter(image, image, radius, eps)


def random_grey_weights(generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
    draws = [lo + (hi - lo) * torch.rand((), generator=generator) for lo, hi in GREY_WEIGHT_RANGES]
    weights = torch.stack(draws)
    return (weights / weights.sum()).to(device)


def texture(image: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """N x 3 x H x W -> N x 1 x H x W grey image with the given (normalised) R, G, B weights."""
    return (image * weights.view(1, 3, 1, 1).to(image.dtype)).sum(1, keepdim=True)
