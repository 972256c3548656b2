"""Colour calibration of the calibrated sample set: one linear colour map, fitted so that the samples' pixel
colours have the exemplars' mean and covariance, applied to every sample.

Why: an adapted StyleGAN2 draws its samples with a global colour cast (paler, greyer than the exemplars), and a
TTN copies the rendering of its whole cartoon domain, cast included. One map for the whole set removes the cast
but keeps the relative colours between samples: a face G_src drew darker stays darker. A per-image transfer
would paint every face in the exemplars' average colours and undo the calibration.

The map is the closed-form Monge-Kantorovich linear transport between two Gaussians (Pitie & Kokaram 2007).
Written by hand: the colour-transfer packages on PyPI transfer one image to one image (Reinhard in Lab); none
fits one map to a whole set, and the statistics here stream, so any set size fits in memory.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dctnet.atomic import write_text_atomic
from dctnet.data.decode import ImageDecodeError, list_images, read_image, write_image

log = logging.getLogger(__name__)

RIDGE = 1e-4  # added to both colour covariances ([0, 1] units) before fitting


def colour_map_path(samples: str | Path) -> Path:
    """Where ``match_sample_colours`` records the map it applied to ``samples``: beside the folder."""
    samples = Path(samples)
    return samples.with_name(samples.name + ".colour_map.json")


@dataclass
class ColourStatistics:
    """Running sums of a set's RGB pixels (in [0, 1]) for its mean and covariance."""

    count: int = 0
    total: np.ndarray = field(default_factory=lambda: np.zeros(3))
    outer: np.ndarray = field(default_factory=lambda: np.zeros((3, 3)))

    def add(self, image: np.ndarray) -> None:
        pixels = image.reshape(-1, 3).astype(np.float64) / 255.0
        self.count += len(pixels)
        self.total += pixels.sum(0)
        self.outer += pixels.T @ pixels

    @property
    def mean(self) -> np.ndarray:
        return self.total / self.count

    @property
    def covariance(self) -> np.ndarray:
        return self.outer / self.count - np.outer(self.mean, self.mean)


def _sqrtm(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix."""
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 1e-10, None))) @ vectors.T


@dataclass
class ColourMap:
    """``y = matrix @ (x - source_mean) + target_mean`` on RGB in [0, 1]."""

    matrix: np.ndarray
    source_mean: np.ndarray
    target_mean: np.ndarray

    @classmethod
    def fit(cls, source: ColourStatistics, target: ColourStatistics) -> "ColourMap":
        """The linear map that carries ``source``'s mean and covariance onto ``target``'s (Monge-Kantorovich).

        Both covariances get a ridge of ``RIDGE`` (a standard deviation of 0.01, 2.5 grey levels), so that a set
        with almost no spread along some colour direction is not stretched without bound along it."""
        if source.count == 0 or target.count == 0:
            raise ValueError("colour matching needs at least one readable image on each side")
        ridge = RIDGE * np.eye(3)
        root = _sqrtm(source.covariance + ridge)
        inverse_root = np.linalg.inv(root)
        matrix = inverse_root @ _sqrtm(root @ (target.covariance + ridge) @ root) @ inverse_root
        return cls(matrix, source.mean, target.mean)

    def apply(self, image: np.ndarray) -> np.ndarray:
        pixels = image.reshape(-1, 3).astype(np.float64) / 255.0
        mapped = (pixels - self.source_mean) @ self.matrix.T + self.target_mean
        return np.clip(mapped * 255.0 + 0.5, 0, 255).astype(np.uint8).reshape(image.shape)

    def as_dict(self) -> dict[str, list]:
        return {"matrix": self.matrix.round(6).tolist(), "source_mean": self.source_mean.round(6).tolist(),
                "target_mean": self.target_mean.round(6).tolist()}


def folder_statistics(folder: str | Path) -> ColourStatistics:
    """Colour statistics of every readable image in ``folder``; unreadable ones are logged and skipped."""
    statistics = ColourStatistics()
    for path in list_images(folder):
        try:
            statistics.add(read_image(path))
        except ImageDecodeError as error:
            log.warning("colour statistics: skipping %s (%s)", path, error)
    return statistics


def match_sample_colours(samples: str | Path, reference: str | Path) -> ColourMap:
    """Rewrite every image in ``samples`` through the one map that gives the set ``reference``'s colour
    statistics; the map is written beside the folder (``<samples>.colour_map.json``) and returned."""
    samples = Path(samples)
    colour_map = ColourMap.fit(folder_statistics(samples), folder_statistics(reference))
    for path in list_images(samples):
        write_image(path, colour_map.apply(read_image(path)))
    write_text_atomic(colour_map_path(samples),
                      json.dumps({"reference": str(reference), **colour_map.as_dict()}, indent=1) + "\n")
    log.info("matched the colours of %s to %s (mean %s -> %s)", samples, reference,
             colour_map.source_mean.round(3).tolist(), colour_map.target_mean.round(3).tolist())
    return colour_map
