"""The image decoder and image folders over a corpus of bad files: RGB or one clear error, never a crash."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dctnet.data.decode import ImageDecodeError, read_image, write_image
from dctnet.data.folders import ImageFolder


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture()
def corpus(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8))
    files = {
        "good.png": _png_bytes(rgb),
        "good.jpg": _jpeg_bytes(rgb),
        "truncated.png": _png_bytes(rgb)[:200],
        "truncated.jpg": _jpeg_bytes(rgb)[: len(_jpeg_bytes(rgb)) // 2],
        "zero.png": b"",
        "text.jpg": b"this is not an image at all\n" * 10,
        "cmyk.jpg": _jpeg_bytes(rgb.convert("CMYK")),
        "sixteen.png": _png_bytes(Image.fromarray((np.arange(40 * 60).reshape(40, 60) * 20).astype(np.uint16))),
        "rgba.png": _png_bytes(Image.fromarray(rng.integers(0, 255, (40, 60, 4), dtype=np.uint8), mode="RGBA")),
        "palette.png": _png_bytes(rgb.convert("P")),
        "grey.png": _png_bytes(rgb.convert("L")),
        "one.png": _png_bytes(Image.new("RGB", (1, 1), (10, 20, 30))),
        "huge.png": _png_bytes(Image.new("L", (3000, 3000))),
    }
    paths = {}
    for name, data in files.items():
        path = tmp_path / name
        path.write_bytes(data)
        paths[name] = path
    return paths


GOOD = ["good.png", "good.jpg", "cmyk.jpg", "sixteen.png", "rgba.png", "palette.png", "grey.png", "one.png"]
BAD = {"truncated.png": "decode", "truncated.jpg": "decode", "zero.png": "empty", "text.jpg": "decode",
       "huge.png": "pixel"}


@pytest.mark.parametrize("name", GOOD)
def test_every_mode_decodes_to_rgb_uint8(corpus: dict[str, Path], name: str) -> None:
    image = read_image(corpus[name], max_pixels=1_000_000)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.shape[:2] == ((1, 1) if name == "one.png" else (40, 60))


def test_sixteen_bit_keeps_its_range(corpus: dict[str, Path]) -> None:
    image = read_image(corpus["sixteen.png"])
    brightest = (40 * 60 - 1) * 20  # 47980 of 65535: scaled to 8 bits, not clipped to 255 nor truncated
    assert image.min() == 0 and image.max() == round(brightest / 65535 * 255)


def test_alpha_is_composited_on_white(tmp_path: Path) -> None:
    transparent = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    path = tmp_path / "clear.png"
    transparent.save(path)
    assert (read_image(path) == 255).all()


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    image = Image.new("RGB", (60, 40), (0, 0, 0))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif.tobytes())
    assert read_image(path).shape[:2] == (60, 40)


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_files_raise_one_clear_error_naming_the_file(corpus: dict[str, Path], name: str) -> None:
    with pytest.raises(ImageDecodeError) as error:
        read_image(corpus[name], max_pixels=1_000_000)
    assert name in str(error.value)
    assert BAD[name] in str(error.value).lower() or "cannot" in str(error.value).lower()


def test_folder_skips_bad_files_counts_them_and_loader_survives(corpus: dict[str, Path], caplog) -> None:
    folder_path = next(iter(corpus.values())).parent
    with caplog.at_level(logging.WARNING):
        folder = ImageFolder(folder_path, size=16, max_pixels=1_000_000)
    assert set(p.name for p in folder.skipped) >= {"zero.png", "text.jpg", "huge.png", "truncated.png"}
    assert len(folder) + len(folder.skipped) == len(corpus)
    assert sum("skipping unreadable image" in r.message for r in caplog.records) == len(folder.skipped)
    # every position yields an image, including files that only fail on full decoding
    for index in range(len(folder)):
        assert folder.load(index).shape == (16, 16, 3)
    batch = torch.utils.data.default_collate([torch.from_numpy(folder.load(i)) for i in range(len(folder))])
    assert batch.shape[0] == len(folder)


def test_empty_and_missing_folders_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no usable images"):
        ImageFolder(tmp_path, size=16)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageFolder(tmp_path / "nope", size=16)


def test_write_is_atomic_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    target = tmp_path / "out" / "a.png"
    write_image(target, np.zeros((8, 8, 3), np.uint8))
    assert read_image(target).shape == (8, 8, 3)
    assert [p.name for p in target.parent.iterdir()] == ["a.png"]
