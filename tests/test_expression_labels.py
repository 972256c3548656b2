"""Expression labels of real photos: FAN landmarks, the openness ratios, the content-keyed cache, and the
documented stage-2 command on a plain folder of real photos (random FAN weights in the release's format)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image
from safetensors.torch import save_file

from dctnet.data.expression import CACHE_FILE, expression_labels, read_cache
from dctnet.models.landmarks import FAN, eye_aspect_ratio, heatmap_points, load_fan, mouth_aspect_ratio
from dctnet.weights import MissingWeightsError


def random_fan(path: Path, stacks: int = 1) -> Path:
    """A FAN file in the release's layout with random weights (the real one cannot be downloaded here)."""
    torch.manual_seed(0)
    state = FAN(stacks).state_dict()
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)  # face-alignment's .pth.tar: a plain state dict
    return path


@pytest.fixture(scope="module")
def fan_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_fan(tmp_path_factory.mktemp("fan") / "fan.safetensors")


def plain_photo_folder(folder: Path) -> Path:
    """Real photos as a user has them: different sizes and formats, plus one image without a face."""
    folder.mkdir(parents=True)
    astronaut = skimage.data.astronaut()
    Image.fromarray(astronaut).save(folder / "astronaut.png")
    Image.fromarray(astronaut).resize((300, 300)).save(folder / "small.jpg", quality=90)
    Image.fromarray(astronaut).convert("L").save(folder / "grey.png")
    Image.fromarray(astronaut).convert("RGBA").save(folder / "alpha.png")
    Image.fromarray(np.full((128, 160, 3), 120, np.uint8)).save(folder / "wall.png")  # no face
    return folder


def test_stacks_are_read_from_the_file_and_both_formats_load_strictly(tmp_path: Path) -> None:
    for name, stacks in (("two.safetensors", 2), ("release.pth.tar", 1)):
        network = load_fan(random_fan(tmp_path / name, stacks))
        assert network.stacks == stacks
        assert network(torch.rand(1, 3, 256, 256)).shape == (1, 68, 64, 64)
    state = FAN(1).state_dict()
    state.pop("l0.weight")
    save_file(state, str(tmp_path / "broken.safetensors"))
    with pytest.raises(Exception, match="missing 1 keys"):
        load_fan(tmp_path / "broken.safetensors")


def test_missing_weights_name_the_file_and_the_offline_alternative(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    folder = plain_photo_folder(tmp_path / "photos")
    with pytest.raises(MissingWeightsError) as error:
        expression_labels(sorted(folder.iterdir()), folder, 0.35, 0.8)
    message = str(error.value)
    assert "2DFAN4-11f355bf06.pth.tar" in message and str(tmp_path / "torch") in message
    assert "ttn.loss.face.kind=identity" in message


def test_heatmap_maxima_are_found_to_a_quarter_pixel() -> None:
    heatmaps = torch.zeros(1, 68, 64, 64)
    targets = torch.rand(68, 2) * 56 + 4
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    for k, (x, y) in enumerate(targets):
        heatmaps[0, k] = torch.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 4)
    assert (heatmap_points(heatmaps)[0] - targets).abs().max() <= 0.5


def test_openness_ratios_follow_the_landmarks() -> None:
    points = np.zeros((68, 2), np.float32)
    eye = np.array([[0, 0], [1, -1], [2, -1], [3, 0], [2, 1], [1, 1]], np.float32)  # width 3, opening 2
    points[36:42], points[42:48] = eye, eye + [10, 0]
    assert eye_aspect_ratio(points, 36) == pytest.approx(2 / 3)
    points[36:42, 1] *= 0.0  # shut
    assert eye_aspect_ratio(points, 36) == 0.0
    lips = np.array([[0, 0], [1, -1], [2, -1], [3, -1], [4, 0], [3, 1], [2, 1], [1, 1]], np.float32)
    points[60:68] = lips
    assert mouth_aspect_ratio(points) == pytest.approx(2 / 4)


def test_labels_are_cached_by_content_and_faceless_photos_are_left_out(tmp_path: Path, fan_file: Path,
                                                                       monkeypatch) -> None:
    folder = plain_photo_folder(tmp_path / "photos")
    files = sorted(folder.iterdir())
    names, table = expression_labels(files, folder, 0.35, 0.8, str(fan_file))
    assert names == ["eyes", "mouth"] and set(table) == {f.name for f in files}
    assert np.isnan(table["wall.png"]).all()  # MTCNN finds no face in a flat wall
    for name in ("astronaut.png", "small.jpg", "grey.png", "alpha.png"):
        assert np.isfinite(table[name]).all() and ((0 <= table[name]) & (table[name] <= 1)).all(), name
    assert len(read_cache(folder / CACHE_FILE)[0]) == 5

    # Unchanged files are not even read again: their name, size and time find their digest.
    monkeypatch.setattr("dctnet.data.expression.file_digest", None)  # would fail if called
    np.testing.assert_array_equal(expression_labels(files, folder, 0.35, 0.8, str(fan_file))[1]["wall.png"],
                                  table["wall.png"])
    monkeypatch.undo()

    # Cached: no landmark network is needed again, even under a new name.
    (folder / "astronaut.png").rename(folder / "renamed.png")
    files = sorted(p for p in folder.iterdir() if p.suffix != ".csv")
    monkeypatch.setattr("dctnet.data.expression.LandmarkLabeller", None)  # would fail if called
    again = expression_labels(files, folder, 0.35, 0.8, str(fan_file))[1]
    np.testing.assert_array_equal(again["renamed.png"], table["astronaut.png"])
    raw = np.array(next(iter(v for v in read_cache(folder / CACHE_FILE)[0].values() if np.isfinite(v).all())))
    scaled = expression_labels(files, folder, 2 * raw[0], 4 * raw[1], str(fan_file))[1]  # the open ratios scale
    assert any(np.allclose(v, [0.5, 0.25]) for v in scaled.values())

    # A changed photo is relabelled: without the weights that is the clear error.
    monkeypatch.undo()
    Image.fromarray(skimage.data.astronaut()[::-1].copy()).save(folder / "renamed.png")
    with pytest.raises(MissingWeightsError, match="1 photos"):
        expression_labels(files, folder, 0.35, 0.8, str(tmp_path / "absent.pth.tar"))


def test_stage_two_runs_on_a_plain_folder_of_real_photos(synthetic_root: Path, tmp_path: Path,
                                                         fan_file: Path) -> None:
    """README step 4 with the expression loss: labels are computed, cached beside the photos, used."""
    from conftest import make_config, tiny_overrides

    from dctnet.ttn.train import train_ttn

    folder = plain_photo_folder(tmp_path / "photos")
    overrides = tiny_overrides(synthetic_root, tmp_path / "run") + [
        "data=folders", f"data.photos={folder}", f"data.cartoons={synthetic_root / 'cartoons'}", "data.size=32",
        "trainer.max_steps=3", "trainer.log_every_n_steps=1", "ttn.loss.face.kind=expression", f"ttn.loss.face.landmark_weights={fan_file}"]
    model = train_ttn(make_config("ttn", overrides))
    assert model.is_file() and len(read_cache(folder / CACHE_FILE)[0]) == 5
    metrics = (tmp_path / "run" / "ttn" / "logs").rglob("metrics.csv")
    logged = "".join(path.read_text() for path in metrics)
    assert "face_expression" in logged and "regressor_loss" in logged


def test_the_expression_losses_skip_photos_without_labels() -> None:
    from dctnet.ttn.module import labelled_l1

    predicted = torch.tensor([[0.2, 0.4], [0.9, 0.9]], requires_grad=True)
    labels = torch.tensor([[0.0, 0.0], [float("nan"), float("nan")]])
    loss = labelled_l1(predicted, labels)
    assert loss.item() == pytest.approx(0.3)
    loss.backward()
    assert predicted.grad[1].abs().sum() == 0
    assert labelled_l1(predicted, torch.full((2, 2), float("nan"))).item() == 0.0
