"""Face alignment on real photos that scikit-image ships: faces found, eyes at the template, inverse exact."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from dctnet.data.align import FaceAligner, align_folder, template_points
from dctnet.data.decode import write_image


@pytest.fixture(scope="module")
def aligner() -> FaceAligner:
    return FaceAligner(size=256, scale=0.75)


def test_astronaut_face_is_aligned_to_the_template(aligner: FaceAligner) -> None:
    faces = aligner.align(skimage.data.astronaut())
    assert len(faces) == 1 and faces[0].probability > 0.99
    crop = faces[0].crop
    assert crop.shape == (256, 256, 3)
    # independent check: detect the landmarks again on the crop itself
    redetected = aligner.detect(crop)
    assert len(redetected) == 1
    eyes = redetected[0][2][:2]
    error = np.linalg.norm(eyes - template_points(256, 0.75)[:2], axis=1)
    print(f"eye position error on the aligned crop: {error.round(2)} px")
    assert error.max() < 0.025 * 256  # 6.4 px: MTCNN's landmark noise on a ~90 px face, magnified ~2.8x
    fitted = cv2.transform(faces[0].landmarks[None].astype(np.float32), faces[0].matrix)[0]
    # eyes fit the template; the mouth corners of a smiling face cannot all fit a similarity transform
    assert np.linalg.norm(fitted[:2] - template_points(256, 0.75)[:2], axis=1).max() < 0.025 * 256


def test_inverse_transform_maps_the_crop_back_onto_the_original(aligner: FaceAligner) -> None:
    image = skimage.data.astronaut()
    face = aligner.align(image)[0]
    back = cv2.warpAffine(face.crop, face.inverse, (image.shape[1], image.shape[0]))
    x0, y0, x1, y1 = face.box.astype(int)
    region = (slice(y0 + 5, y1 - 5), slice(x0 + 5, x1 - 5))
    difference = np.abs(back[region].astype(float) - image[region].astype(float)).mean()
    assert difference < 6.0  # only resampling blur separates them
    landmarks_in_crop = cv2.transform(face.landmarks[None].astype(np.float32), face.matrix)[0]
    restored = cv2.transform(landmarks_in_crop[None], face.inverse)[0]
    np.testing.assert_allclose(restored, face.landmarks, atol=1e-3)


def test_folder_alignment_names_faces_lists_misses_and_survives_bad_files(tmp_path: Path) -> None:
    astronaut = skimage.data.astronaut()
    write_image(tmp_path / "in" / "two.png", np.concatenate([astronaut, astronaut[:, ::-1]], axis=1))
    write_image(tmp_path / "in" / "grey.png", np.repeat(skimage.data.camera()[..., None], 3, axis=2))
    write_image(tmp_path / "in" / "blank.png", np.full((120, 160, 3), 200, np.uint8))
    (tmp_path / "in" / "broken.jpg").write_bytes(b"not a jpeg")
    result = align_folder(tmp_path / "in", tmp_path / "out", size=128)
    assert {"two_0.png", "two_1.png"} <= set(result["crops"])
    assert any(p.endswith("blank.png") for p in result["no_face"])
    assert len(result["unreadable"]) == 1 and "broken.jpg" in result["unreadable"][0]
    with open(tmp_path / "out" / "alignment.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(result["crops"]) and float(rows[0]["probability"]) > 0.9
    assert "blank.png" in (tmp_path / "out" / "no_face.txt").read_text()


def test_images_with_the_same_stem_get_distinct_crops_and_rows(tmp_path: Path) -> None:
    astronaut = skimage.data.astronaut()
    write_image(tmp_path / "in" / "astronaut.png", astronaut)
    write_image(tmp_path / "in" / "astronaut.jpg", astronaut)
    result = align_folder(tmp_path / "in", tmp_path / "out", size=96)
    with open(tmp_path / "out" / "alignment.csv") as handle:
        crops = [row["crop"] for row in csv.DictReader(handle)]
    assert sorted(crops) == ["astronaut_jpg_0.png", "astronaut_png_0.png"] == sorted(result["crops"])
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == sorted(crops)
