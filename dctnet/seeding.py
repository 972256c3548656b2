"""Random networks that are the same in every run, whatever the run's seed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def fixed_seed(seed: int = 0) -> Iterator[None]:
    """Inside: torch's CPU and CUDA RNGs seeded with ``seed``; after: the caller's RNG state as it was.

    Used to build random-weight networks (content VGG, FaceNet, FID and LPIPS backbones, the coverage classifier)
    so their numbers compare between runs and neither they nor the training seed draw from each other.
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        yield
