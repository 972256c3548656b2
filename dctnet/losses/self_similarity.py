"""Self-similarity structure loss: an image may restyle its reference, not rearrange it.

Used twice. Stage 1 (``ccn.adapt.self_similarity_weight``): G_cartoon(w) against G_src(w). Stage 2
(``ttn.loss.self_similarity``): the TTN's output against its photo, so an unpaired TTN cannot paint the skin in
the hair's hue, or long hair as skin, which the exemplars' discriminators alone allowed (README, session 27).

With ~100 exemplars that all lack something (long hair, say), the adapting discriminator teaches G to paint it
away, and the calibrated samples lose the content the photos had (README, "Is skin tone the hard case?"). This
loss compares, image by image, which regions of G_cartoon(w) look alike and which differ with the same for
G_src(w): the pairwise colour distances between coarse cells, each image's matrix divided by its own mean
distance. A new palette, saturation, flat colours or a global contrast change leave it nearly unchanged; hair
painted over with the background, or a head redrawn in another shape, changes whole rows of it. It is the
image-space form of the self-correlation consistency of Xiao et al., "Few Shot Generative Model Adaption via
Relaxed Spatial Structural Alignment" (CVPR 2022), which computes it on generator features; no package
provides it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cell_distances(images: torch.Tensor, cells: int) -> torch.Tensor:
    """``(N, cells^2, cells^2)`` fp32 colour distances between the cell means of each image, divided by their mean."""
    means = F.adaptive_avg_pool2d(images.float(), cells).flatten(2).transpose(1, 2)  # (N, cells^2, C)
    # sqrt of a clamped squared distance: torch.cdist's gradient is NaN at the zero diagonal
    squared = (means[:, :, None, :] - means[:, None, :, :]).pow(2).sum(-1)
    distances = squared.clamp_min(1e-8).sqrt()
    return distances / distances.mean(dim=(1, 2), keepdim=True).clamp_min(1e-6)


def self_similarity_loss(image: torch.Tensor, reference: torch.Tensor, cells: int = 16) -> torch.Tensor:
    """Mean absolute difference of ``image``'s and ``reference``'s normalised cell-distance matrices (0 = same
    structure). Differentiable in ``image``; ``reference`` is fixed."""
    if image.shape != reference.shape:
        raise ValueError(f"image {tuple(image.shape)} and reference {tuple(reference.shape)} differ in shape")
    with torch.autocast(device_type=image.device.type, enabled=False):  # distances of near colours: fp32
        return (cell_distances(image, cells) - cell_distances(reference, cells).detach()).abs().mean()
