"""The image representations the TTN discriminators and generator see (White-box cartoonization).

- surface: the image guided-filtered by itself (edge-preserving smoothing, r=5, eps=0.2) -> flat regions;
- texture: a random grey conversion (random channel weights shared by real and fake) -> strokes/edges;
- the generator output is guided-filtered with the input photo as guide (r=1, eps=1e-2).
The guided filter is kornia's differentiable implementation.
"""

from __future__ import annotations

import torch
from kornia.filters import guided_blur

# Official ranges are given for B, G, R channel weights; stored here in R, G, B order.
GREY_WEIGHT_RANGES = ((0.199, 0.399), (0.487, 0.687), (0.014, 0.214))


def guided_filter(guide: torch.Tensor, image: torch.Tensor, radius: int, eps: float) -> torch.Tensor:
    """Edge-preserving filter of ``image`` steered by ``guide`` (both N x C x H x W, same C)."""
    return guided_blur(guide, image, kernel_size=2 * radius + 1, eps=eps, border_type="reflect")


def surface(image: torch.Tensor, radius: int = 5, eps: float = 0.2) -> torch.Tensor:
    return guided_filter(image, image, radius, eps)


def random_grey_weights(generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
    draws = [lo + (hi - lo) * torch.rand((), generator=generator) for lo, hi in GREY_WEIGHT_RANGES]
    weights = torch.stack(draws)
    return (weights / weights.sum()).to(device)


def texture(image: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """N x 3 x H x W -> N x 1 x H x W grey image with the given (normalised) R, G, B weights."""
    return (image * weights.view(1, 3, 1, 1).to(image.dtype)).sum(1, keepdim=True)
