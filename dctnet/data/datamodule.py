"""Lightning data module for GAN training on one or two unpaired image domains.

Batch ``i`` of rank ``r`` is a pure function of ``(seed, i, r)``: which images, and the GEM draw of
each. A resumed run therefore sees exactly the batches an uninterrupted run would have seen, without
relying on Lightning to restore a sampler mid-epoch, and the result does not depend on the number of
loader workers. Each DDP rank draws its own stream, so no DistributedSampler is needed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from dctnet.config import GemConfig, LoaderConfig, config_node
from dctnet.data.decode import to_tensor, to_uint8  # noqa: F401  (re-exported: the tensor convention)
from dctnet.data.folders import ImageFolder
from dctnet.data.gem import apply_gem, build_gem


class SeededBatchSampler(Sampler[list[tuple[int, ...]]]):
    """Yields, for iterations ``start, start+1, ...``, a batch of keys ``(gem_seed, index_0, index_1, ...)``."""

    def __init__(self, sizes: list[int], batch_size: int, seed: int, rank: int, start: int, total: int) -> None:
        self.sizes, self.batch_size, self.seed, self.rank = sizes, batch_size, seed, rank
        self.next_iteration, self.total = start, total

    def __len__(self) -> int:
        # One epoch = the whole run, also after a resume: Lightning restores the batch count of a
        # mid-epoch checkpoint, and a shorter length would end the epoch early and re-create the
        # iterator (which draws from the global RNG, breaking exact resume).
        return max(self.total, 1)

    def batch(self, iteration: int) -> list[tuple[int, ...]]:
        rng = np.random.default_rng([self.seed, iteration, self.rank])
        gem_seeds = rng.integers(0, 2**31 - 1, size=self.batch_size)
        indices = [rng.integers(0, n, size=self.batch_size) for n in self.sizes]
        return [(int(gem_seeds[b]), *(int(ix[b]) for ix in indices)) for b in range(self.batch_size)]

    def __iter__(self) -> Iterator[list[tuple[int, ...]]]:
        while True:  # a later epoch continues the stream; it never repeats it
            iteration = self.next_iteration
            self.next_iteration += 1
            yield self.batch(iteration)


class DomainsDataset(Dataset):
    """Maps a key ``(gem_seed, index per domain)`` to ``{domain: tensor}`` with GEM applied per image."""

    def __init__(self, folders: dict[str, ImageFolder], gem: GemConfig | None) -> None:
        self.folders = folders
        self.gem = build_gem(gem) if gem is not None else None

    def __len__(self) -> int:
        return max(len(f) for f in self.folders.values())

    def __getitem__(self, key: tuple[int, ...]) -> dict[str, torch.Tensor]:
        gem_seed, *indices = key
        item = {}
        for offset, (name, index) in enumerate(zip(self.folders, indices)):
            folder = self.folders[name]
            image, position = folder.load_with_position(index)
            item[name] = to_tensor(apply_gem(self.gem, image, gem_seed + 7919 * offset))
            if folder.has_attributes:  # geometry-invariant labels (openness), so GEM keeps them valid
                item[f"{name}_attributes"] = torch.from_numpy(folder.attributes(position))
        return item


class GANDataModule(pl.LightningDataModule):
    """Unpaired domains (``{"photo": dir, "cartoon": dir or [dirs]}``, or one domain) for a GAN module.

    Runs build it from ``data.loader`` (``dctnet.training.gan_datamodule``); the loading keywords have no defaults
    here so that conf/ holds the only copy (scripts pass ``**loader_options()``)."""

    def __init__(
        self,
        domains: dict[str, str | list[str]],
        size: int,
        batch_size: int,
        seed: int,
        total_iterations: int,
        gem: GemConfig | None = None,
        *,
        num_workers: int,
        max_pixels: int,
        cache: bool,
        max_images: int | None,
    ) -> None:
        super().__init__()
        self.domains, self.size, self.batch_size = domains, size, batch_size
        self.seed, self.total_iterations, self.gem = seed, total_iterations, gem
        self.num_workers, self.max_pixels, self.cache, self.max_images = num_workers, max_pixels, cache, max_images
        self.dataset: DomainsDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is None:
            folders = {}
            for name, path in self.domains.items():  # a domain is one folder or a list of folders (merged)
                first, *extra = [path] if isinstance(path, (str, Path)) else list(path)
                folders[name] = ImageFolder(first, self.size, self.max_pixels, cache=self.cache,
                                            max_images=self.max_images, extra_roots=extra)
            self.dataset = DomainsDataset(folders, self.gem)

    def train_dataloader(self) -> DataLoader:
        self.setup()
        assert self.dataset is not None
        start = 0
        rank = 0
        if self.trainer is not None:
            module: Any = self.trainer.lightning_module
            start = int(getattr(module, "iteration", 0))
            rank = self.trainer.global_rank
        sampler = SeededBatchSampler(
            [len(f) for f in self.dataset.folders.values()], self.batch_size, self.seed, rank, start,
            self.total_iterations,
        )
        return DataLoader(
            self.dataset,
            batch_sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )


def loader_options(**changes: Any) -> dict[str, Any]:
    """The loading keywords of conf's ``data.loader`` node (``changes`` replaced), for scripts and tests that build
    a :class:`GANDataModule` without a run config."""
    options = dataclasses.asdict(config_node("data.loader", LoaderConfig, **changes))
    options.pop("_target_")
    return options
