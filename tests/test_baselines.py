"""Baselines of the paper's comparison: CycleGAN learns its cycle, resumes exactly and is scored by evaluate.py;
Toonify's projection recovers a G_src sample whose latent is known, and renders it with the blended generator."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_config, tiny_overrides
from safetensors.torch import load_file

from dctnet.baselines.cyclegan import ImagePool
from dctnet.baselines.cyclegan_nets import NLayerDiscriminator, ResnetGenerator
from dctnet.baselines.toonify import export_toonify, load_toonify, mean_w, project
from dctnet.baselines.train import load_baseline, train_baseline
from dctnet.ccn.module import build_generator, make_noise
from dctnet.checkpoints import CheckpointError
from dctnet.config import StyleGANConfig, ToonifyConfig

CYCLEGAN_TINY = ["baseline=cyclegan", "cyclegan.ngf=8", "cyclegan.ndf=8", "cyclegan.blocks=2", "cyclegan.batch_size=4",
                 "cyclegan.lr=2e-3", "cyclegan.decay_from=1.0",
                 "cyclegan.pool_size=8"]
TOONIFY_TINY = dict(steps=400, lr=0.1, batch_size=4, latent_space="w_plus", pixel=1.0, perceptual=0.0,
                    vgg_layer="conv2_2", vgg_pretrained=False, vgg_weights=None, noise_seed=0,
                    mean_latents=4096, precision="32-true")


def logged(stage_dir: Path, key: str) -> list[float]:
    rows = list(csv.DictReader(next((stage_dir / "logs").rglob("metrics.csv")).open()))
    return [float(r[key]) for r in rows if r.get(key)]


def test_reference_networks_have_the_reference_shapes() -> None:
    generator = ResnetGenerator(64, 9, 2)  # --netG resnet_9blocks --ngf 64
    assert sum(p.numel() for p in generator.parameters()) == 11_378_179
    assert generator(torch.zeros(1, 3, 64, 64)).shape == (1, 3, 64, 64)
    patch = NLayerDiscriminator(64, 3)(torch.zeros(1, 3, 256, 256))
    assert patch.shape == (1, 1, 30, 30)  # 70x70 receptive fields on a 256 px image


def test_image_pool_returns_stored_fakes_once_full_and_keeps_them_in_its_state() -> None:
    torch.manual_seed(0)
    pool = ImagePool(4, 8)
    first = torch.randn(4, 3, 8, 8)
    assert torch.equal(pool.query(first), first)  # filling: returned as given
    later = pool.query(torch.randn(16, 3, 8, 8))
    from_history = sum(any(torch.equal(image, old) for old in first) for image in later)
    assert 0 < from_history < 16
    assert set(pool.state_dict()) == {"images", "count"}


def test_cyclegan_cycle_loss_falls_and_outputs_are_scored(synthetic_root: Path, tmp_path: Path) -> None:
    cfg = make_config("baselines", tiny_overrides(synthetic_root, tmp_path) + CYCLEGAN_TINY +
                      ["trainer.max_steps=200", "trainer.log_every_n_steps=2", "trainer.checkpoint_every=1000"])
    model = train_baseline(cfg)
    cycle = logged(tmp_path / "baselines" / "cyclegan", "train/cycle")
    assert len(cycle) >= 100
    # measured 0.74 -> 0.59 over 200 iterations (8-channel generators, instance norm: colours come back slowly)
    assert np.mean(cycle[-10:]) < 0.85 * np.mean(cycle[:10])
    stylized = tmp_path / "stylized" / "cyclegan"
    assert len(list(stylized.glob("*.png"))) == 8
    assert '"kind": "cyclegan"' in (stylized / "provenance.json").read_text()
    stylizer = load_baseline(model)
    photo = np.full((36, 44, 3), 128, np.uint8)  # any size: padded to the generator's stride and cropped back
    assert stylizer(photo).shape == photo.shape

    from dctnet.metrics.run import run_evaluation

    report = run_evaluation(make_config("evaluate", tiny_overrides(synthetic_root, tmp_path) + [
        "evaluate.feature_extractor=random", "evaluate.lpips_pretrained=false", "evaluate.align_faces=false",
        "evaluate.bootstrap=20", "identity.network=none"]))
    text = report.read_text()
    assert "| cyclegan |" in text and "cyclegan made by**: cyclegan, 200 iterations" in text
    assert "baselines not run**: toonify" in text


def test_cyclegan_resumed_run_ends_with_the_same_weights_as_an_uninterrupted_one(synthetic_root: Path,
                                                                                 tmp_path: Path) -> None:
    def run(run_dir: Path, steps: int) -> dict[str, torch.Tensor]:
        cfg = make_config("baselines", tiny_overrides(synthetic_root, run_dir) + CYCLEGAN_TINY +
                          [f"trainer.max_steps={steps}", "data.test_photos=/nonexistent"])
        return load_file(train_baseline(cfg))

    whole = run(tmp_path / "whole", 12)  # the pool fills (8 images) and starts swapping within the run
    halfway = run(tmp_path / "split", 6)
    resumed = run(tmp_path / "split", 12)
    assert not torch.equal(halfway["model.1.weight"], resumed["model.1.weight"])
    for key in whole:
        torch.testing.assert_close(whole[key], resumed[key], rtol=0, atol=1e-6, msg=key)


TINY_G = StyleGANConfig(size=16, style_dim=32, n_mlp=2, channel_multiplier=1, channel_max=32, lr_mlp=0.01)


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_projection_recovers_a_source_sample_whose_latent_is_known(precision: str) -> None:
    """In fp32 and under bf16 autocast (toonify.precision follows trainer.precision), the same error bounds."""
    torch.manual_seed(0)
    source = build_generator(TINY_G).eval()
    cfg = ToonifyConfig(**{**TOONIFY_TINY, "precision": precision})
    with torch.no_grad():
        z = torch.randn(4, TINY_G.style_dim, generator=torch.Generator().manual_seed(7))
        noise = make_noise(source, 4, "cpu", rng=torch.Generator().manual_seed(cfg.noise_seed))
        target = source([z], noise=noise)[0]
        start = source([mean_w(source, cfg.mean_latents)[None].repeat(4, 1)], input_is_latent=True, noise=noise)[0]
    latent, error, _ = project(source, target, cfg)
    initial = (start - target).abs().mean(dim=(1, 2, 3))
    assert latent.shape == (4, source.n_latent, TINY_G.style_dim)
    # stated error after 400 steps: under 0.1 mean L1 ([-1, 1] units) and under 0.12x the error of the starting
    # mean-latent image (measured 0.036-0.084 against 0.55-1.03 for this random G_src)
    assert float(error.max()) < 0.1, error
    assert bool((error < 0.12 * initial).all()), (error, initial)


def test_toonify_file_renders_the_projection_with_the_cartoon_layers(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source, cartoon = build_generator(TINY_G), build_generator(TINY_G)
    with torch.no_grad():  # a "cartoon" generator that differs from G_src in its high-resolution layers only
        for name, parameter in cartoon.named_parameters():
            if name.startswith(("convs.", "to_rgbs.")):
                parameter.add_(0.5 * torch.randn_like(parameter))
    path = export_toonify(tmp_path / "toonify.safetensors", source, cartoon, TINY_G, 8, 0.0,
                          ToonifyConfig(**TOONIFY_TINY))
    stylizer = load_baseline(path)
    photo = (np.random.default_rng(0).random((24, 20, 3)) * 255).astype(np.uint8)
    first, second = stylizer(photo), stylizer(photo)
    assert first.shape == photo.shape
    np.testing.assert_array_equal(first, second)  # deterministic: fixed start, noise and schedule
    assert len(stylizer.backend.errors) == 2 and all(0 <= e < 2 for e in stylizer.backend.errors)
    backend = load_toonify(path)
    assert not torch.equal(backend.source.convs[-1].conv.weight, backend.blended.convs[-1].conv.weight)  # 16 px
    torch.testing.assert_close(backend.source.convs[0].conv.weight, backend.blended.convs[0].conv.weight)  # 8 px


def test_a_toonify_file_with_a_foreign_header_is_a_clear_error(tmp_path: Path) -> None:
    from dctnet.checkpoints import save_model

    path = save_model(tmp_path / "toonify.safetensors", {"x": torch.zeros(1)}, kind="toonify", arch={})
    with pytest.raises(CheckpointError, match="does not describe a Toonify model"):
        load_toonify(path)
