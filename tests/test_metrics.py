"""Metrics: the Fréchet distance equals an independent computation, KID and the report behave on crafted inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import pytest
from conftest import make_config, tiny_overrides

from dctnet.data.decode import list_images, read_image, write_image
from dctnet.data.synthetic import ATTRIBUTES
from dctnet.metrics.coverage import labelled_portraits, train_coverage_model
from dctnet.metrics.distances import bootstrap_interval, feature_statistics, frechet_distance, kernel_distance
from dctnet.metrics.evaluate import paired_difference, read_per_image
from dctnet.metrics.run import run_evaluation


def test_frechet_distance_matches_an_independent_eigenvalue_computation() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 16))
    b = rng.normal(0.3, 1.4, size=(250, 16)) @ rng.normal(size=(16, 16)) * 0.3
    mu1, s1 = feature_statistics(a)
    ours = frechet_distance(mu1, s1, *feature_statistics(b))
    mu2, s2 = b.mean(0), np.cov(b, rowvar=False)
    # Tr sqrt(S1 S2) = sum of square roots of the eigenvalues of S1 S2 (real, >= 0 for PSD S1, S2)
    eigenvalues = np.linalg.eigvals(s1 @ s2)
    independent = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(eigenvalues.real.clip(0)).sum()
    assert ours == pytest.approx(independent, rel=1e-6)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0, abs=1e-6)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two() -> None:
    rng = np.random.default_rng(1)
    same = kernel_distance(rng.normal(size=(200, 8)), rng.normal(size=(200, 8)), subsets=20, subset_size=100)[0]
    different = kernel_distance(rng.normal(size=(200, 8)), rng.normal(1, 1, size=(200, 8)), subsets=20,
                                subset_size=100)[0]
    assert abs(same) < 0.02 and different > 0.2


def test_bootstrap_interval_contains_the_mean() -> None:
    values = np.random.default_rng(2).normal(5, 1, 200)
    low, high = bootstrap_interval(values)
    assert low < values.mean() < high and high - low < 0.5


@pytest.fixture()
def eval_config(synthetic_root: Path, tmp_path: Path):
    def build(methods: dict[str, Path]) -> object:
        overrides = tiny_overrides(synthetic_root, tmp_path) + [
            "evaluate.feature_extractor=random", "evaluate.lpips_pretrained=false", "evaluate.bootstrap=50",
            "evaluate.align_faces=false"]  # MTCNN finds no synthetic faces; real faces: the test below
        overrides += [f"+evaluate.methods.{k}={v}" for k, v in methods.items()]
        return make_config("evaluate", overrides)
    return build


def test_report_on_crafted_methods(synthetic_root: Path, tmp_path: Path, eval_config) -> None:
    # "perfect": the paired targets themselves; "shuffled": the targets in the wrong order
    targets = list_images(synthetic_root / "test_cartoons")
    for k, path in enumerate(targets):
        write_image(tmp_path / "perfect" / path.name, read_image(path))
        write_image(tmp_path / "shuffled" / path.name, read_image(targets[(k + 3) % len(targets)]))
    report = run_evaluation(eval_config({"perfect": tmp_path / "perfect", "shuffled": tmp_path / "shuffled"}))
    metrics = json.loads((report.parent / "metrics.json").read_text())
    methods, header = metrics["methods"], metrics["header"]
    assert set(methods) == {"identity", "cartoon_filter", "perfect", "shuffled"}
    assert methods["perfect"]["paired_l1"]["mean"] == 0 and methods["perfect"]["paired_ssim"]["mean"] > 0.999
    assert methods["perfect"]["paired_lpips"]["mean"] < 1e-6
    assert methods["identity"]["lpips_source"]["mean"] < 1e-6  # the input compared with itself
    assert methods["identity"]["identity"]["mean"] == pytest.approx(1.0, abs=1e-5)
    assert methods["shuffled"]["paired_l1"]["mean"] > methods["identity"]["paired_l1"]["mean"] * 0.5
    assert methods["shuffled"]["identity"]["mean"] < methods["perfect"]["identity"]["mean"]
    assert "random" in header["FID/KID features"] and "pretrained=false" in header["identity network"]
    text = report.read_text()
    assert "| perfect |" in text and "grid.png" in text and (report.parent / "grid.png").is_file()
    assert (report.parent / "metrics.csv").read_text().count("\n") == 5
    # per-image values: their means are the table's, and the paired difference of two methods is their gap
    per_image = read_per_image(report.parent)
    assert set(per_image) == set(methods) and len(per_image["shuffled"]["paired_l1"]) == len(targets)
    for method, values in per_image.items():
        for metric, array in values.items():
            assert np.nanmean(array) == pytest.approx(methods[method][metric]["mean"], abs=1e-6)
    gap = paired_difference(per_image, "perfect", "shuffled", "paired_l1", bootstrap=200)
    assert gap["mean"] == pytest.approx(-methods["shuffled"]["paired_l1"]["mean"], abs=1e-6)
    assert gap["ci_high"] < 0  # every image's output is closer to its target than a shuffled one
    same = paired_difference(per_image, "shuffled", "shuffled", "paired_l1")
    assert same["mean"] == same["ci_low"] == same["ci_high"] == 0


def test_missing_outputs_are_reported_clearly(tmp_path: Path, synthetic_root: Path, eval_config) -> None:
    first = list_images(synthetic_root / "test_cartoons")[0]
    write_image(tmp_path / "partial" / first.name, read_image(first))
    with pytest.raises(ValueError, match="7 of 8 source images have no output"):
        run_evaluation(eval_config({"partial": tmp_path / "partial"}))


def test_identity_on_aligned_real_faces_counts_sources_without_a_face(tmp_path: Path) -> None:
    import cv2
    import skimage.data
    import torch

    from dctnet.config import IdentityConfig, config_node
    from dctnet.metrics.evaluate import identity_embeddings, identity_similarities, source_alignments
    from dctnet.models.face import build_identity_network

    astronaut = cv2.resize(skimage.data.astronaut(), (256, 256))
    shifted = np.roll(astronaut, (6, -4), axis=(0, 1))
    no_face = cv2.resize(skimage.data.coffee(), (256, 256))
    sources = np.stack([astronaut, shifted, no_face])
    alignments = source_alignments(sources, 160)
    assert [m is None for m in alignments] == [False, False, True]
    torch.manual_seed(0)
    identity = build_identity_network(config_node("identity", IdentityConfig, pretrained=False))
    source_embeddings = identity_embeddings(sources, identity, alignments, 160)
    assert len(source_embeddings) == 2  # one per source with a face
    same = identity_similarities(sources, source_embeddings, identity, alignments, 160)
    assert np.isnan(same[2]) and np.allclose(same[:2], 1.0, atol=1e-5)
    noisy = np.clip(sources.astype(int) + np.random.default_rng(0).integers(-60, 60, sources.shape), 0, 255)
    changed = identity_similarities(noisy.astype(np.uint8), source_embeddings, identity, alignments, 160)
    assert np.isnan(changed[2]) and (changed[:2] < same[:2]).all()


def test_identical_folders_give_zero_fid_and_kid(synthetic_root: Path, tmp_path: Path) -> None:
    cartoons = synthetic_root / "cartoons"
    overrides = tiny_overrides(synthetic_root, tmp_path) + [
        "evaluate.feature_extractor=random", "evaluate.lpips_pretrained=false", "evaluate.bootstrap=20",
        "evaluate.align_faces=false", f"evaluate.sources={cartoons}", f"evaluate.reference={cartoons}",
        "evaluate.paired_targets=null", "evaluate.baselines=[identity]"]
    report = run_evaluation(make_config("evaluate", overrides))
    identity_row = json.loads((report.parent / "metrics.json").read_text())["methods"]["identity"]
    assert abs(identity_row["fid"]) < 1e-3
    # the unbiased KID of a set against itself is slightly negative (its self-pairs sit in the cross term)
    assert identity_row["kid"] < 1e-3
    assert identity_row["identity"]["mean"] == pytest.approx(1.0, abs=1e-5)


def test_random_metric_networks_are_the_same_in_every_run() -> None:
    import torch

    from dctnet.config import IdentityConfig, config_node
    from dctnet.metrics.features import build_feature_extractor
    from dctnet.metrics.run import build_lpips
    from dctnet.models.face import build_identity_network

    images = np.random.default_rng(0).integers(0, 255, (2, 64, 64, 3), dtype=np.uint8)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    outputs = []
    for seed in (1, 2):  # different global RNG states before building
        torch.manual_seed(seed)
        identity = build_identity_network(config_node("identity", IdentityConfig, pretrained=False, input_size=96))
        perceptual = build_lpips(False)[0]
        features = build_feature_extractor("random")
        with torch.no_grad():
            outputs.append((identity(x), perceptual(x, x.flip(0)), features(images)))
    a, b = outputs
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and np.array_equal(a[2], b[2])


def test_coverage_training_portraits_follow_the_cartoon_style_they_will_count() -> None:
    """With ``skin_tones`` the classifier learns dark skin from brown flat cartoon skin, as the sets it counts show."""
    from dctnet.data.synthetic import CARTOON_SKIN_TONES, cartoon_rgb

    brown = torch.tensor(cartoon_rgb(CARTOON_SKIN_TONES[0]), dtype=torch.float32) / 127.5 - 1

    def brown_pixels(skin_tones: bool) -> int:
        images, labels = labelled_portraits(60, 32, seed=3, skin_tones=skin_tones)
        dark = labels[:, list(ATTRIBUTES).index("dark_skin")] == 1
        return int(((images[dark] - brown.view(1, 3, 1, 1)).abs().amax(1) < 0.05).sum())

    assert brown_pixels(True) > 100 and brown_pixels(False) < 10


def test_attribute_coverage_counts_what_a_set_shows() -> None:
    """The coverage classifier learns the synthetic attributes and counts them in new sets of either style."""
    model = train_coverage_model(size=32, count=1200, steps=300, seed=0)
    assert min(model.accuracy.values()) > 0.8, model.accuracy
    images, labels = labelled_portraits(400, 32, seed=5)
    glasses = model.names.index("glasses")
    with_glasses = model.coverage(images[labels[:, glasses] == 1])["glasses"]
    without_glasses = model.coverage(images[labels[:, glasses] == 0])["glasses"]
    assert with_glasses > 0.8 and without_glasses < 0.2
