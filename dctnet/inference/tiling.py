"""Overlapping-tile evaluation of a fully convolutional network, so memory is bounded by the tile, not the image.

Tiles overlap by ``overlap`` pixels and are blended with weights that ramp linearly across each overlap
(and stay 1 at the image border), so no seam shows. Written by hand: the few tiling packages around
(e.g. for super-resolution) bind to their own models and dtypes; this is twenty lines on any callable.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def tile_layout(length: int, tile: int, overlap: int, stride: int = 1) -> tuple[int, list[int]]:
    """(tile size, start offsets) covering ``length`` with the fewest tiles of at most ``tile`` that overlap by
    at least ``overlap``; tiles are shrunk to share the length evenly (a 1024 px side with 512 px tiles gets
    three 384 px tiles, not three 512 px ones), and sizes and offsets stay on the ``stride`` grid."""
    if length <= tile:
        return length, [0]
    count = -(-(length - overlap) // (tile - overlap - stride))
    size = -(-(length + (count - 1) * (overlap + stride)) // count)
    size = min(tile, -(-size // stride) * stride)
    starts = [(k * (length - size) // (count - 1)) // stride * stride for k in range(count - 1)]
    return size, [*starts, length - size]


def tile_starts(length: int, tile: int, overlap: int, stride: int = 1) -> list[int]:
    """Start offsets of :func:`tile_layout`."""
    return tile_layout(length, tile, overlap, stride)[1]


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
                batch_size: int = 1, stride: int = 1) -> torch.Tensor:
    """``forward`` over 1 x C x H x W ``image`` in tiles of at most ``tile`` pixels a side; H, W and ``tile``
    must be multiples of the network's ``stride``.

    Tiles are sent ``batch_size`` at a time; outputs are accumulated on the CPU in float32.
    """
    _, _, height, width = image.shape
    if height <= tile and width <= tile:
        return forward(image)
    if overlap + stride >= tile // 2:
        raise ValueError(f"overlap {overlap} must be less than half the tile {tile}")
    tile_h, rows = tile_layout(height, tile, overlap, stride)
    tile_w, columns = tile_layout(width, tile, overlap, stride)
    boxes = [(y, x, tile_h, tile_w) for y in rows for x in columns]
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
