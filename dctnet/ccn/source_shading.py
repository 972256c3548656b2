"""Source shading: carry each latent's coarse colour, relative to G_src's typical sample, into its cartoon.

Why: adapting StyleGAN2 to ~100 exemplars repaints every face in the exemplars' colours (the learning
benchmark's adapted G drew every face peach within 200 iterations, whatever layers were blended or frozen), so
a tone no exemplar shows (dark skin there) never reaches the calibrated samples, though G_src still draws it.
The ratio of a G_src sample's coarse colours to G_src's typical sample says, region by region and channel by
channel, how much darker or lighter this face is than the typical one; the same ratio of the cartoon says what
the adapted G kept of it. The sample takes the source's ratio in place of its own:

    out = cartoon * (coarse(source) / typical(source)) ** s / (coarse(cartoon) / typical(cartoon)) ** s

``coarse`` is the mean over a ``cells`` x ``cells`` grid, bilinearly upsampled: smooth, so the cartoon's
outlines and flat regions stay its own. ``typical`` is the per-cell median over the sampled latents: the median,
not the mean, so that the common faces keep exactly the exemplars' colours and only the rarer ones move (with a
mean, the dark quarter of the faces would lighten all the others). Multiplicative, so a darker face keeps the
cartoon's hue relations (peach times 0.6 is a brown) and black outlines stay black.
Written here: it is specific to a pair of generators that share a latent space; no package does it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

FLOOR = 0.05  # coarse colours below this ([0, 1] units) count as this: ratios of near-black cells stay bounded
MAX_FACTOR = 4.0  # no pixel is scaled by more than this, or less than its inverse


def coarse_colours(images: torch.Tensor, cells: int) -> torch.Tensor:
    """Cell means of ``images`` in [-1, 1] on a ``cells`` x ``cells`` grid, in [0, 1] units, floored at FLOOR."""
    unit = (images.float() + 1) / 2
    return F.adaptive_avg_pool2d(unit, cells).clamp_min(FLOOR)


@dataclass
class SourceShading:
    """The probe set's typical (median) coarse colours of both generators, and how strongly to carry the source's
    over."""

    source_typical: torch.Tensor  # (3, cells, cells)
    cartoon_typical: torch.Tensor
    strength: float

    @classmethod
    def fit(cls, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], cells: int, strength: float) -> "SourceShading":
        """Per-cell medians over ``(cartoons, sources)`` batches drawn from the same latents by the cartoon
        generator and G_src (streamed: only the small coarse grids are kept)."""
        grids: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])
        for cartoons, sources in batches:
            if sources.shape != cartoons.shape:
                raise ValueError(f"source and cartoon batches differ in shape: {tuple(sources.shape)} against "
                                 f"{tuple(cartoons.shape)}")
            grids[0].append(coarse_colours(cartoons, cells).cpu())
            grids[1].append(coarse_colours(sources, cells).cpu())
        if not grids[0]:
            raise ValueError("source shading needs at least one probe image")
        cartoon_typical, source_typical = (torch.quantile(torch.cat(g), 0.5, dim=0) for g in grids)
        return cls(source_typical, cartoon_typical, strength)

    def apply(self, cartoons: torch.Tensor, sources: torch.Tensor) -> torch.Tensor:
        """``cartoons`` (in [-1, 1]) with the source's relative coarse colours in place of their own."""
        cells = self.source_typical.shape[-1]
        source_ratio = coarse_colours(sources, cells) / self.source_typical.to(sources.device)
        cartoon_ratio = coarse_colours(cartoons, cells) / self.cartoon_typical.to(cartoons.device)
        factor = (source_ratio / cartoon_ratio) ** self.strength
        factor = F.interpolate(factor, size=cartoons.shape[-2:], mode="bilinear", align_corners=False)
        factor = factor.clamp(1 / MAX_FACTOR, MAX_FACTOR)
        unit = (cartoons.float() + 1) / 2 * factor
        return (unit * 2 - 1).clamp(-1, 1).to(cartoons.dtype)
