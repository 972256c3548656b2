"""GEM: size and dtype kept, geometry changed within the configured ranges, reproducible, switchable."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data

from dctnet.config import GemConfig, config_node
from dctnet.data.gem import apply_gem, build_gem


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    import cv2

    return cv2.resize(skimage.data.astronaut(), (128, 128), interpolation=cv2.INTER_AREA)


def test_size_dtype_and_reproducibility(astronaut: np.ndarray) -> None:
    pipeline = build_gem(config_node("data.gem", GemConfig))
    a = apply_gem(pipeline, astronaut, seed=5)
    b = apply_gem(pipeline, astronaut, seed=5)
    assert a.shape == astronaut.shape and a.dtype == np.uint8
    assert np.array_equal(a, b)
    outputs = [apply_gem(pipeline, astronaut, seed=s) for s in range(20)]
    assert sum(not np.array_equal(o, astronaut) for o in outputs) >= 15
    assert len({o.tobytes() for o in outputs}) >= 15


def test_disabled_gem_is_identity(astronaut: np.ndarray) -> None:
    assert build_gem(config_node("data.gem", GemConfig, enabled=False)) is None
    assert apply_gem(None, astronaut, seed=1) is astronaut


def _marker_image() -> np.ndarray:
    image = np.full((101, 101, 3), 128, np.uint8)
    image[50, 70] = 255  # a bright dot 20 px right of the centre
    return image


def _dot(image: np.ndarray) -> np.ndarray:
    grey = image.astype(float).mean(-1)
    ys, xs = np.nonzero(grey > 160)
    return np.array([xs.mean() - 50, ys.mean() - 50])


def test_rotation_stays_within_the_limit() -> None:
    cfg = config_node("data.gem", GemConfig, flip_p=0, scale_p=0, rotate_p=1.0, rotate_limit=10, translate=0)
    pipeline = build_gem(cfg)
    angles = []
    for seed in range(40):
        moved = _dot(apply_gem(pipeline, _marker_image(), seed))
        assert abs(np.linalg.norm(moved) - 20) < 1.5  # rotation keeps the distance to the centre
        angles.append(np.degrees(np.arctan2(moved[1], moved[0])))
    assert max(abs(a) for a in angles) <= 10.5 and max(angles) - min(angles) > 8


def test_scale_stays_within_shrink_and_zoom_ranges() -> None:
    cfg = config_node("data.gem", GemConfig, flip_p=0, scale_p=1.0, rotate_p=0, zoom_p=0.3, shrink_min=0.8,
                      zoom_max=1.1, translate=0)
    pipeline = build_gem(cfg)
    scales = [np.linalg.norm(_dot(apply_gem(pipeline, _marker_image(), seed))) / 20 for seed in range(60)]
    assert 0.78 <= min(scales) and max(scales) <= 1.12
    assert min(scales) < 0.9 and max(scales) > 1.0  # both shrinking and (rarely) zooming happen


def test_reflect_border_leaves_no_black_corners(astronaut: np.ndarray) -> None:
    bright = np.full_like(astronaut, 200)
    pipeline = build_gem(config_node("data.gem", GemConfig, scale_p=1.0, rotate_p=1.0, zoom_p=0.0))
    for seed in range(10):
        assert apply_gem(pipeline, bright, seed).min() > 150
