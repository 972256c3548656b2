"""The one image decoder used everywhere: any file a user hands us becomes RGB uint8 or one clear error.

Handles EXIF orientation, grayscale / palette / RGBA / CMYK / 16-bit modes, a pixel limit against
decompression bombs, and corrupt or truncated data. Writing is atomic (temp file, then rename) so an
interrupted run never leaves half an image behind.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from dctnet.atomic import replace_atomically

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif")  # GIF: its first frame
DEFAULT_MAX_PIXELS = 100_000_000  # ~10k x 10k; larger files are refused, not decoded


class ImageDecodeError(ValueError):
    """A file could not be turned into an RGB image; the message names the file and the reason."""


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert every PIL mode we may meet to 8-bit RGB; alpha is composited on white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        if image.mode == "F":
            top = max(float(array.max()), 1.0)
        array = np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(array, mode="L").convert("RGB")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode != "RGB":
        return image.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV
    return image


def read_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode ``path`` to an ``H x W x 3`` uint8 RGB array, or raise :class:`ImageDecodeError`."""
    path = Path(path)
    if not path.is_file():
        raise ImageDecodeError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ImageDecodeError(f"{path}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageDecodeError(
                        f"{path}: {width}x{height} = {width * height} pixels exceeds the limit of "
                        f"{max_pixels} (raise data.loader.max_pixels if this image is genuine)"
                    )
                if width < 1 or height < 1:
                    raise ImageDecodeError(f"{path}: image has no pixels ({width}x{height})")
                image.load()  # forces full decoding: truncated data fails here
                image = ImageOps.exif_transpose(image)
                rgb = _to_rgb(image)
                array = np.asarray(rgb, dtype=np.uint8).copy()
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageDecodeError(f"{path}: refused as a decompression bomb ({error})") from error
    except (OSError, SyntaxError, ValueError, Image.UnidentifiedImageError) as error:
        raise ImageDecodeError(f"{path}: cannot decode image ({type(error).__name__}: {error})") from error
    return array


def write_image(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an RGB uint8 array atomically: a temporary file in the same folder, then rename."""
    path = Path(path)
    suffix = path.suffix.lower() or ".png"
    options = {"quality": 95} if suffix in (".jpg", ".jpeg") else {}
    replace_atomically(path, lambda temporary: Image.fromarray(np.ascontiguousarray(image)).save(temporary, **options),
                       suffix)


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Sorted image files directly inside ``folder`` (by extension); errors for missing folders."""
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is not a folder")
    unusable = unusable_entries(folder)
    if unusable:
        log.warning("%s: skipping %d entries that are not readable files (%s)", folder, len(unusable),
                    "; ".join(f"{p.name}: {why}" for p, why in list(unusable.items())[:5]))
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def unusable_entries(folder: str | os.PathLike) -> dict[Path, str]:
    """Entries named like images that are not regular files: symlink loops, dangling links, folders."""
    reasons = {}
    for path in Path(folder).iterdir():
        if path.suffix.lower() not in IMAGE_EXTENSIONS or path.is_file():
            continue
        try:
            path.stat()
            reasons[path] = "not a regular file"
        except OSError as error:  # ELOOP (symlink loop), ENOENT (dangling link), ...
            reasons[path] = error.strerror or type(error).__name__
    return reasons


def ensure_writable_folder(folder: str | os.PathLike) -> Path:
    """Create ``folder`` if needed and prove it takes a file, or raise one clear error before any work is done."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".dctnet-write-check-"):
            pass
    except OSError as error:
        raise PermissionError(f"cannot write outputs to {folder}: {error.strerror or error}. Choose a writable "
                              "output location (--output)") from None
    return folder


def unique_stems(paths: list[Path]) -> dict[Path, str]:
    """An output stem per input: its own stem, or ``<stem>_<ext>`` when stems clash (``a.jpg``, ``a.png``),
    so no output overwrites another and the names stay the same from run to run."""
    counts: dict[str, int] = {}
    for path in paths:
        counts[path.stem] = counts.get(path.stem, 0) + 1
    return {path: f"{path.stem}_{path.suffix.lstrip('.').lower()}" if counts[path.stem] > 1 else path.stem
            for path in paths}


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> 3xHxW float in [-1, 1] (the models' convention)."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div(127.5).sub(1.0)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Nx3xHxW (or 3xHxW) in [-1, 1] -> NxHxWx3 (or HxWx3) uint8."""
    array = images.detach().float().clamp(-1, 1).add(1).mul(127.5).round().byte().cpu()
    return array.permute(*range(array.ndim - 3), -2, -1, -3).numpy()
