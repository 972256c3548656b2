"""Overlapping-tile evaluation of a fully convolutional network, so memory is bounded by the tile, not the image.

Tiles overlap by ``overlap`` pixels and are blended with weights that ramp linearly across each overlap
(and stay 1 at the image border), so no seam shows. Written by hand: the few tiling packages around
(e.g. for super-resolution) bind to their own models and dtypes; this is twenty lines on any callable.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets covering ``length`` with tiles of ``tile`` overlapping by at least ``overlap``."""
    if length <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, length - tile, step))
    return [*starts, length - tile]


def _ramp(length: int, start: int, total: int, overlap: int) -> torch.Tensor:
    """1-D blend weight of one tile: a linear ramp over the overlap on sides that have a neighbour."""
    weight = torch.ones(length)
    if overlap <= 0:
        return weight
    ramp = (torch.arange(overlap, dtype=torch.float32) + 1) / (overlap + 1)
    if start > 0:
        weight[:overlap] = ramp
    if start + length < total:
        weight[-overlap:] = torch.minimum(weight[-overlap:], ramp.flip(0))
    return weight


def tiled_apply(forward: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, tile: int, overlap: int,
                batch_size: int = 1) -> torch.Tensor:
    """``forward`` over 1 x C x H x W ``image`` in tiles; H, W and ``tile`` must suit the network's stride.

    Tiles are sent ``batch_size`` at a time; outputs are accumulated on the CPU in float32.
    """
    _, _, height, width = image.shape
    if height <= tile and width <= tile:
        return forward(image)
    if overlap >= tile // 2:
        raise ValueError(f"overlap {overlap} must be less than half the tile {tile}")
    boxes = [(y, x, min(tile, height), min(tile, width))
             for y in tile_starts(height, tile, overlap) for x in tile_starts(width, tile, overlap)]
    total = torch.zeros(1, 3, height, width)
    weights = torch.zeros(1, 1, height, width)
    for first in range(0, len(boxes), batch_size):
        group = boxes[first:first + batch_size]
        outputs = forward(torch.cat([image[:, :, y:y + h, x:x + w] for y, x, h, w in group]))
        for out, (y, x, h, w) in zip(outputs, group):
            weight = _ramp(h, y, height, overlap)[:, None] * _ramp(w, x, width, overlap)[None, :]
            total[0, :, y:y + h, x:x + w] += out.float() * weight
            weights[0, 0, y:y + h, x:x + w] += weight
    return total / weights
