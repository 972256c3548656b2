"""Colour calibration of the sample set: one map undoes a global colour cast and keeps relative colours."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from dctnet.ccn.colour_match import ColourMap, ColourStatistics, folder_statistics, match_sample_colours
from dctnet.data.decode import list_images, read_image, write_image
from dctnet.data.synthetic import render, sample_face


def _portraits(count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [render(sample_face(rng), 32, "cartoon", rng) for _ in range(count)]


def _cast(image: np.ndarray) -> np.ndarray:
    """A global cast like an adapted G's: greyer (saturation x0.6) and darker (x0.8)."""
    rgb = image.astype(np.float64) / 255
    grey = rgb.mean(-1, keepdims=True)
    return np.clip((grey + 0.6 * (rgb - grey)) * 0.8 * 255 + 0.5, 0, 255).astype(np.uint8)


def _luminance(image: np.ndarray) -> float:
    return float(image.astype(np.float64).mean())


def test_matching_a_cast_set_to_its_reference_undoes_the_cast_and_keeps_each_images_own_colours(tmp_path: Path
                                                                                                 ) -> None:
    originals = _portraits(24)
    for i, image in enumerate(originals):
        write_image(tmp_path / "reference" / f"{i:03d}.png", image)
        write_image(tmp_path / "samples" / f"{i:03d}.png", _cast(image))
    match_sample_colours(tmp_path / "samples", tmp_path / "reference")
    matched = [read_image(p) for p in list_images(tmp_path / "samples")]
    before = np.mean([np.abs(_cast(o).astype(int) - o).mean() for o in originals])
    after = np.mean([np.abs(m.astype(int) - o).mean() for m, o in zip(matched, originals)])
    assert after < 0.15 * before  # the cast is (nearly) gone, image by image
    # one map for the set: the images keep their own colours and their brightness order
    order = np.argsort([_luminance(o) for o in originals])
    assert np.corrcoef([_luminance(matched[i]) for i in order], [_luminance(originals[i]) for i in order])[0, 1] > 0.98
    statistics = folder_statistics(tmp_path / "samples")
    assert np.allclose(statistics.mean, folder_statistics(tmp_path / "reference").mean, atol=0.01)
    saved = json.loads((tmp_path / "samples.colour_map.json").read_text())
    assert np.array(saved["matrix"]).shape == (3, 3) and saved["reference"] == str(tmp_path / "reference")


def test_the_fitted_map_carries_mean_and_covariance_exactly() -> None:
    rng = np.random.default_rng(1)
    source_pixels = rng.uniform(0.2, 0.6, (4000, 3)) @ np.array([[1, 0.3, 0], [0, 1, 0.2], [0.1, 0, 1]]) * 0.6
    target_pixels = rng.normal(0.5, 0.1, (4000, 3)) @ np.array([[1, -0.2, 0.1], [0, 0.8, 0], [0.2, 0, 1.1]])
    source, target = ColourStatistics(), ColourStatistics()
    source.add((source_pixels * 255).reshape(40, 100, 3))
    target.add((target_pixels * 255).reshape(40, 100, 3))
    colour_map = ColourMap.fit(source, target)
    mapped = (source_pixels - source.mean) @ colour_map.matrix.T + target.mean
    assert np.allclose(mapped.mean(0), target.mean, atol=1e-9)
    assert np.allclose(np.cov(mapped.T, bias=True), target.covariance, atol=2e-4)  # up to the ridge
    assert np.all(np.linalg.eigvalsh(colour_map.matrix) > 0)  # order-keeping along every colour direction


def test_a_nearly_flat_sample_set_is_not_stretched_without_bound() -> None:
    rng = np.random.default_rng(2)
    flat, colourful = ColourStatistics(), ColourStatistics()
    flat.add(np.clip(128 + rng.normal(0, 0.05, (64, 64, 3)), 0, 255))  # almost one grey
    colourful.add(rng.uniform(0, 255, (64, 64, 3)))
    assert np.linalg.eigvalsh(ColourMap.fit(flat, colourful).matrix).max() < 40  # std 0.29 / ridge std 0.01 = 29


def test_unreadable_reference_files_are_skipped_and_an_empty_reference_is_a_clear_error(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_image(tmp_path / "samples" / "a.png", _portraits(1)[0])
    write_image(tmp_path / "reference" / "good.png", _portraits(1, seed=3)[0])
    (tmp_path / "reference" / "broken.png").write_bytes(b"\x89PNG truncated")
    with caplog.at_level(logging.WARNING):
        match_sample_colours(tmp_path / "samples", tmp_path / "reference")
    assert "broken.png" in caplog.text
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="at least one readable image"):
        match_sample_colours(tmp_path / "samples", tmp_path / "empty")
