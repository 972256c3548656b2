"""Image folders that survive bad files: each unreadable file is skipped with one warning, and counted."""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from dctnet.data.decode import DEFAULT_MAX_PIXELS, ImageDecodeError, list_images, read_image

log = logging.getLogger(__name__)


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop to a square, then resize to ``size`` (area filter when shrinking)."""
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    image = image[top : top + side, left : left + side]
    if side != size:
        interpolation = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
        image = cv2.resize(image, (size, size), interpolation=interpolation)
    return image


ATTRIBUTES_FILE = "attributes.csv"


def read_attributes(root: Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """Optional ``attributes.csv`` (``file,<name>,...``, values in [0, 1]): labels for the facial perception loss."""
    path = root / ATTRIBUTES_FILE
    if not path.is_file():
        return [], {}
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return [], {}
    names = [k for k in rows[0] if k != "file"]
    try:
        table = {r["file"]: np.array([float(r[n]) for n in names], np.float32) for r in rows}
    except (KeyError, ValueError) as error:
        raise ValueError(f"{path}: malformed attributes file ({error}); expected columns file,{','.join(names)}") from error
    return names, table


class ImageFolder:
    """The decodable images of one folder, as square ``size`` RGB uint8 arrays.

    Files are checked once at construction (header and structure, cheap); anything that still fails
    to decode later is replaced by the next good image, with one warning per file. ``skipped`` lists
    every rejected file with its reason.
    """

    def __init__(
        self,
        root: str | Path,
        size: int,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        cache: bool = False,
        max_images: int | None = None,
        extra_roots: Sequence[str | Path] = (),
    ) -> None:
        self.root = Path(root)
        self.size = size
        self.max_pixels = max_pixels
        self.skipped: dict[Path, str] = {}
        candidates = list_images(self.root) + [p for extra in extra_roots for p in list_images(extra)]
        self.files: list[Path] = []
        for path in candidates:
            reason = self._quick_check(path)
            if reason is None:
                self.files.append(path)
            else:
                self._skip(path, reason)
        if max_images is not None:
            self.files = self.files[:max_images]
        if not self.files:
            raise ValueError(
                f"image folder {self.root} has no usable images "
                f"({len(candidates)} image files, {len(self.skipped)} unreadable)"
            )
        if self.skipped:
            log.warning("%s: %d usable images, %d skipped", self.root, len(self.files), len(self.skipped))
        if len(self.files) == 1:
            log.warning("%s: a single usable image: every batch repeats it (a GAN will memorise it)", self.root)
        self._cache: dict[int, np.ndarray] | None = {} if cache else None
        self.set_attributes(*read_attributes(self.root))

    @property
    def has_attributes(self) -> bool:
        """True when every usable image has a row in ``attributes.csv`` (found once: it is asked per image)."""
        return self._has_attributes

    def set_attributes(self, names: list[str], table: dict[str, np.ndarray]) -> None:
        """Labels computed elsewhere (expression landmarks) instead of an ``attributes.csv``."""
        self.attribute_names, self._attributes = list(names), dict(table)
        self._has_attributes = bool(self.attribute_names) and all(p.name in self._attributes for p in self.files)

    def attributes(self, index: int) -> np.ndarray:
        """Facial attributes of image ``index`` (same position rule as :meth:`load`)."""
        return self._attributes[self.files[index % len(self.files)].name]

    def _quick_check(self, path: Path) -> str | None:
        try:
            if path.stat().st_size == 0:
                return "empty file"
            with Image.open(path) as image:
                width, height = image.size
                if width * height > self.max_pixels:
                    return f"{width}x{height} exceeds the pixel limit {self.max_pixels}"
                image.verify()
        except Exception as error:  # PIL raises many types for bad data; all mean "skip"
            return f"{type(error).__name__}: {error}"
        return None

    def _skip(self, path: Path, reason: str) -> None:
        if path not in self.skipped:
            self.skipped[path] = reason
            log.warning("skipping unreadable image %s (%s)", path, reason)

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int) -> np.ndarray:
        """Image ``index`` (modulo the length), or the next decodable one after it.

        A replacement image carries its own attributes only through :meth:`load_with_position`.
        """
        return self.load_with_position(index)[0]

    def load_with_position(self, index: int) -> tuple[np.ndarray, int]:
        """Like :meth:`load`, also returning the position of the image actually returned."""
        for offset in range(len(self.files)):
            position = (index + offset) % len(self.files)
            if self._cache is not None and position in self._cache:
                return self._cache[position], position
            path = self.files[position]
            if path in self.skipped:
                continue
            try:
                image = resize_square(read_image(path, self.max_pixels), self.size)
            except ImageDecodeError as error:
                self._skip(path, str(error))
                continue
            if self._cache is not None:
                self._cache[position] = image
            return image, position
        raise ValueError(f"image folder {self.root}: no image could be decoded")
