"""DiffAugment (Zhao et al., 2020): differentiable colour / translation / cutout for few-shot GANs.

Written by hand because the policy is a few tensor ops and no maintained package ships it exactly
(kornia's augmentations are differentiable but parameterised differently). The same augmentation is
applied to real and fake images before the discriminator, so D cannot overfit ~100 exemplars.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _brightness(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.rand(x.size(0), 1, 1, 1, device=x.device, dtype=x.dtype) - 0.5)


def _saturation(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (torch.rand(x.size(0), 1, 1, 1, device=x.device, dtype=x.dtype) * 2) + mean


def _contrast(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - mean) * (torch.rand(x.size(0), 1, 1, 1, device=x.device, dtype=x.dtype) + 0.5) + mean


def _translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    n, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ty = torch.randint(-sh, sh + 1, size=(n, 1, 1), device=x.device)
    tx = torch.randint(-sw, sw + 1, size=(n, 1, 1), device=x.device)
    gy, gx = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    gy = torch.clamp(gy[None] + ty + 1, 0, h + 1)
    gx = torch.clamp(gx[None] + tx + 1, 0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1])
    flat = padded.permute(0, 2, 3, 1).reshape(n, (h + 2) * (w + 2), -1)
    index = (gy * (w + 2) + gx).reshape(n, -1, 1).expand(-1, -1, flat.shape[2])
    return torch.gather(flat, 1, index).reshape(n, h, w, -1).permute(0, 3, 1, 2)


def _cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    oy = torch.randint(0, h + (1 - ch % 2), size=(n, 1, 1), device=x.device)
    ox = torch.randint(0, w + (1 - cw % 2), size=(n, 1, 1), device=x.device)
    gy, gx = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    mask = (~((gy[None] >= oy - ch // 2) & (gy[None] < oy - ch // 2 + ch)
              & (gx[None] >= ox - cw // 2) & (gx[None] < ox - cw // 2 + cw))).to(x.dtype)
    return x * mask.unsqueeze(1)


POLICIES = {"color": (_brightness, _saturation, _contrast), "translation": (_translation,), "cutout": (_cutout,)}


def diff_augment(x: torch.Tensor, policy: list[str] | tuple[str, ...]) -> torch.Tensor:
    """Apply the ``policy`` (a subset of color, translation, cutout, in order); empty = identity."""
    for name in policy:
        if name not in POLICIES:
            raise ValueError(f"unknown DiffAugment policy {name!r}; choose from {sorted(POLICIES)}")
        for op in POLICIES[name]:
            x = op(x)
    return x.contiguous()
