"""Inference on real photos that scikit-image ships: full mode keeps size, head mode changes only around the
face, auto mode is full frame plus faces; a synthetic 20-frame video keeps its frame count and size."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
import torch

from dctnet.checkpoints import save_model
from dctnet.cli import main
from dctnet.inference.stylize import PortraitStylizer, load_stylizer
from dctnet.models.unet import UNetGenerator


@pytest.fixture(scope="module")
def stylizer(tmp_path_factory: pytest.TempPathFactory):
    torch.manual_seed(0)
    net = UNetGenerator(8, 1, 2)
    with torch.no_grad():
        net.head.bias.fill_(0.5)  # a visible, uniform change so "changed" is measurable
    arch = {"base_channels": 8, "num_residual": 1, "num_downsamples": 2, "output_guided_filter": True}
    path = save_model(tmp_path_factory.mktemp("model") / "ttn.safetensors", net.state_dict(), "ttn", arch)
    return load_stylizer(path), path


def test_full_mode_keeps_size(stylizer) -> None:
    image = skimage.data.astronaut()[:301, :417]
    out = PortraitStylizer(stylizer[0], mode="full")(image)
    assert out.shape == image.shape and not np.array_equal(out, image)


def _footprint(portrait: PortraitStylizer, image: np.ndarray) -> np.ndarray:
    """Pixels the aligned crop maps back onto (plus a 2 px margin for interpolation)."""
    face = portrait.aligner.align(image)[0]
    size = portrait.mask.shape[0]
    region = cv2.warpAffine(np.ones((size, size), np.uint8), face.inverse, image.shape[1::-1])
    return cv2.dilate(region, np.ones((5, 5), np.uint8)) > 0


def test_head_mode_changes_only_around_the_face(stylizer) -> None:
    image = skimage.data.astronaut()
    portrait = PortraitStylizer(stylizer[0], mode="head")
    out = portrait(image)
    assert portrait.faces_found == 1
    changed = np.abs(out.astype(int) - image.astype(int)).max(-1) > 2
    footprint = _footprint(portrait, image)
    face = portrait.aligner.align(image)[0]
    cx, cy = face.landmarks[:, 0].mean(), face.landmarks[:, 1].mean()
    assert changed[int(cy), int(cx)]  # the face itself was stylized
    assert not changed[~footprint].any()  # nothing outside the pasted crop
    assert footprint.mean() < 0.5  # and that crop is a part of the picture, not all of it


def test_head_mode_without_a_face_warns_and_keeps_the_image(stylizer, caplog) -> None:
    blank = np.full((96, 128, 3), 180, np.uint8)
    portrait = PortraitStylizer(stylizer[0], mode="head")
    with caplog.at_level("WARNING"):
        out = portrait(blank)
    assert portrait.faces_found == 0 and np.array_equal(out, blank)
    assert "no face found" in caplog.text


def test_auto_mode_is_the_full_frame_away_from_the_face(stylizer) -> None:
    image = skimage.data.astronaut()
    full = PortraitStylizer(stylizer[0], mode="full")(image)
    portrait = PortraitStylizer(stylizer[0], mode="auto")
    auto = portrait(image)
    outside = ~_footprint(portrait, image)
    assert np.array_equal(auto[outside], full[outside]) and not np.array_equal(auto, full)


def test_video_round_trip_keeps_frames_and_size(stylizer, tmp_path: Path, capsys) -> None:
    source = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(source), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    for k in range(20):
        frame = np.full((48, 64, 3), 40, np.uint8)
        cv2.circle(frame, (10 + 2 * k, 24), 6, (200, 180, 40), -1)
        writer.write(frame)
    writer.release()
    assert main(["stylize", str(source), "--model", str(stylizer[1]), "--output", str(tmp_path / "out.mp4")]) == 0
    capture = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    frames = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames += 1
        assert frame.shape == (48, 64, 3)
    assert frames == 20 and "20 frames stylized" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left behind
