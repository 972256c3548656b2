"""The procedural two-domain portraits: folders, exact pairs, distinct styles, attribute labels."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from dctnet.data.decode import list_images, read_image
from dctnet.data.synthetic import generate_dataset


def test_folders_counts_and_sizes(synthetic_root: Path) -> None:
    counts = {name: len(list_images(synthetic_root / name))
              for name in ("photos", "cartoons", "test_photos", "test_cartoons")}
    assert counts == {"photos": 48, "cartoons": 32, "test_photos": 8, "test_cartoons": 8}
    assert read_image(list_images(synthetic_root / "photos")[0]).shape == (32, 32, 3)


def test_test_pairs_show_the_same_face_and_training_domains_are_unpaired(synthetic_root: Path) -> None:
    def load(folder: str) -> np.ndarray:
        return np.stack([read_image(p) for p in list_images(synthetic_root / folder)]).astype(np.float32)

    photos, cartoons = load("test_photos"), load("test_cartoons")
    matched = np.abs(photos - cartoons).mean()
    shuffled = np.abs(photos - np.roll(cartoons, 1, axis=0)).mean()
    assert matched < 0.8 * shuffled  # a pair is far closer than two different faces
    with open(synthetic_root / "photos" / "faces.csv") as a, open(synthetic_root / "cartoons" / "faces.csv") as b:
        assert list(csv.DictReader(a))[0]["skin"] != list(csv.DictReader(b))[0]["skin"]


def test_styles_differ_measurably(synthetic_root: Path) -> None:
    def high_frequency(folder: str) -> float:
        images = np.stack([read_image(p) for p in list_images(synthetic_root / folder)]).astype(np.float32)
        return float(np.abs(np.diff(images, axis=2)).mean())

    def saturation(folder: str) -> float:
        images = np.stack([read_image(p) for p in list_images(synthetic_root / folder)]).astype(np.float32)
        return float((images.max(-1) - images.min(-1)).mean())

    assert saturation("test_cartoons") > saturation("test_photos") * 1.1


def test_attribute_labels_are_written_for_the_facial_perception_loss(synthetic_root: Path) -> None:
    with open(synthetic_root / "photos" / "attributes.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 48 and set(rows[0]) == {"file", "eyes", "mouth"}
    values = np.array([[float(r["eyes"]), float(r["mouth"])] for r in rows])
    assert values.min() >= 0 and values.max() <= 1 and values.std(0).min() > 0.1


def test_biased_exemplars_lack_the_excluded_attributes_while_photos_and_pairs_keep_them(tmp_path: Path) -> None:
    root = generate_dataset(tmp_path, size=32, photos=120, cartoons=60, test=60, seed=1,
                            exemplars_without=["glasses", "dark_skin"])

    def share(folder: str, attribute: str) -> float:
        with open(root / folder / "faces.csv") as handle:
            return float(np.mean([row[attribute] == "True" for row in csv.DictReader(handle)]))

    assert share("cartoons", "glasses") == 0 and share("cartoons", "dark_skin") == 0
    assert share("photos", "glasses") > 0.1 and share("photos", "dark_skin") > 0.1
    assert share("test_photos", "glasses") > 0.1
    assert share("cartoons", "long_hair") > 0.1  # only the named attributes are left out


def test_rare_exemplar_attribute_is_kept_at_a_lower_rate_and_photos_do_not_change(tmp_path: Path) -> None:
    """``exemplars_keep``: the excluded attribute appears in the exemplars, rarer than in the photos; the photos
    (drawn first) are byte-identical to the absent-attribute set's, so a cached G_src stays valid."""
    absent = generate_dataset(tmp_path / "absent", size=32, photos=30, cartoons=300, test=0, seed=2,
                              exemplars_without=["dark_skin"])
    rare = generate_dataset(tmp_path / "rare", size=32, photos=30, cartoons=300, test=0, seed=2,
                            exemplars_without=["dark_skin"], exemplars_keep=0.3)

    def share(root: Path, folder: str) -> float:
        with open(root / folder / "faces.csv") as handle:
            return float(np.mean([row["dark_skin"] == "True" for row in csv.DictReader(handle)]))

    assert share(absent, "cartoons") == 0
    assert 0.03 < share(rare, "cartoons") < 0.6 * share(rare, "photos")
    assert all(a.read_bytes() == b.read_bytes()
               for a, b in zip(list_images(absent / "photos"), list_images(rare / "photos"), strict=True))
    with pytest.raises(ValueError, match="exemplars_keep"):
        generate_dataset(tmp_path / "bad", size=32, photos=1, cartoons=1, test=0, exemplars_keep=0.3)


def test_unknown_attribute_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown synthetic attribute.*glases.*choose from"):
        generate_dataset(tmp_path, size=32, photos=1, cartoons=1, test=0, exemplars_without=["glases"])


def test_skin_tones_style_draws_two_flat_skin_colours_and_leaves_photos_alone(tmp_path: Path) -> None:
    from dctnet.data.synthetic import CARTOON_SKIN_TONES, cartoon_rgb

    plain = generate_dataset(tmp_path / "plain", size=32, photos=4, cartoons=2, test=24, seed=3)
    toned = generate_dataset(tmp_path / "toned", size=32, photos=4, cartoons=2, test=24, seed=3, skin_tones=True)
    for folder in ("photos", "test_photos"):  # the photo domain is the same, byte for byte (G_src caches still hold)
        assert all(a.read_bytes() == b.read_bytes()
                   for a, b in zip(list_images(plain / folder), list_images(toned / folder), strict=True))
    with open(toned / "test_cartoons" / "faces.csv") as handle:
        dark = [row["dark_skin"] == "True" for row in csv.DictReader(handle)]
    assert any(dark) and not all(dark)
    tones = [np.array(cartoon_rgb(tone), np.float32) for tone in CARTOON_SKIN_TONES]
    for image, is_dark in zip(list_images(toned / "test_cartoons"), dark, strict=True):
        pixels = read_image(image).reshape(-1, 1, 3).astype(np.float32)
        near = (np.abs(pixels - np.stack(tones)).max(-1) < 6).sum(0)  # pixels of each flat tone
        assert near[0 if is_dark else 1] > 0 and near[1 if is_dark else 0] == 0, (image.name, near)
