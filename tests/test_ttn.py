"""Stage 2: the official U-Net, losses that move the right networks, learning on paired test faces,
exact resume, and an export written by every run."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_config, tiny_overrides
from safetensors.torch import load_file
from torchmetrics.functional.image import structural_similarity_index_measure as ssim

import dctnet.ttn.module as ttn_module
from dctnet.checkpoints import load_model_file
from dctnet.config import (DiscriminatorConfig, FacePerceptionConfig, IdentityConfig, TTNConfig,
                           TTNLossConfig, UNetConfig, config_node)
from dctnet.data.decode import list_images, read_image, to_tensor, write_image
from dctnet.data.synthetic import ensure_dataset
from dctnet.inference.backends import load_ttn
from dctnet.models.discriminators import PatchDiscriminator
from dctnet.models.unet import TTN, UNetGenerator, pad_to_multiple
from dctnet.ttn.module import TTNModule
from dctnet.ttn.train import train_ttn


def test_default_unet_is_the_official_architecture() -> None:
    net = UNetGenerator()
    assert sum(p.numel() for p in net.parameters()) == 1_467_075
    assert len(net.blocks) == 4 and net.stem.out_channels == 32 and net.blocks[0].conv1.in_channels == 128


@pytest.mark.parametrize("size", [(16, 16), (36, 52), (64, 40)])
def test_unet_is_fully_convolutional(size: tuple[int, int]) -> None:
    net = UNetGenerator(base_channels=8, num_residual=1)
    x = torch.randn(2, 3, *size)
    assert net(x).shape == x.shape
    odd = torch.randn(1, 3, 37, 50)
    padded, original = pad_to_multiple(odd, net.stride)
    assert padded.shape[2] % 4 == 0 and padded.shape[3] % 4 == 0 and original == (37, 50)


def tiny_unet() -> UNetConfig:
    return config_node("ttn.model", UNetConfig, base_channels=8, num_residual=1, num_downsamples=2)


class WiderFilterTTN(TTN):
    """A user's own TTN class named by ``ttn.model._target_``."""


def test_the_ttn_is_built_from_its_config_node_target() -> None:
    """``ttn.model`` is instantiated: its ``_target_`` names the class, the other keys are its arguments."""
    built = ttn_module.build_ttn(dataclasses.replace(tiny_unet(), guided_filter_radius=2))
    assert type(built) is TTN and built.guided_filter_radius == 2 and built.network.base_channels == 8
    custom = dataclasses.replace(tiny_unet(), _target_=f"{__name__}.WiderFilterTTN")
    assert type(ttn_module.build_ttn(custom)) is WiderFilterTTN
    with pytest.raises(TypeError, match="need a dctnet.models.unet.TTN"):
        ttn_module.build_ttn(dataclasses.replace(tiny_unet(), _target_="builtins.dict"))


class RecordingPatchDiscriminator(PatchDiscriminator):
    """A user's own discriminator class named by ``ttn.discriminator._target_``."""


def test_discriminators_and_optimisers_are_built_from_their_config_nodes() -> None:
    """``ttn.discriminator`` and ``ttn.optimizer`` are instantiated: their classes and options reach the module."""
    discriminator = dataclasses.replace(tiny_discriminator(), _target_=f"{__name__}.RecordingPatchDiscriminator")
    loss = config_node("ttn.loss", TTNLossConfig, vgg_pretrained=False, face=FacePerceptionConfig("none", 0.0),
                       image=1.0)
    optimizer = {"_target_": "torch.optim.RMSprop", "alpha": 0.9}
    module = TTNModule(tiny_recipe(loss, discriminator=discriminator, lr_g=3e-4, lr_d=1e-4, optimizer=optimizer),
                       "unused", 0)
    surface, texture, image = module.d_surface, module.d_texture, module.d_image
    assert all(type(d) is RecordingPatchDiscriminator for d in (surface, texture, image))
    assert [d.net[0].in_channels for d in (surface, texture, image)] == [3, 1, 3]
    opt_d, opt_g = module.configure_optimizers()
    assert type(opt_d) is type(opt_g) is torch.optim.RMSprop and opt_d.defaults["alpha"] == 0.9
    assert (opt_d.defaults["lr"], opt_g.defaults["lr"]) == (1e-4, 3e-4)


def tiny_discriminator() -> DiscriminatorConfig:
    return config_node("ttn.discriminator", DiscriminatorConfig, channels=[8, 8, 8])


def tiny_recipe(loss: TTNLossConfig, **fields) -> TTNConfig:
    """conf's ``ttn`` node with a tiny U-Net and discriminators, batch 2 and a 1 kimg EMA half-life."""
    tiny = {"model": tiny_unet(), "discriminator": tiny_discriminator(), "batch_size": 2, "ema_half_life_kimg": 1.0}
    return config_node("ttn", TTNConfig, **{**tiny, "loss": loss, **fields})


def _module(kind: str = "expression") -> TTNModule:
    torch.manual_seed(0)
    loss = config_node("ttn.loss", TTNLossConfig, vgg_pretrained=False, face=FacePerceptionConfig(kind, 1.0))
    return TTNModule(tiny_recipe(loss, lr_g=2e-4, lr_d=2e-4), "unused", 0,
                     identity=config_node("identity", IdentityConfig, pretrained=False, input_size=96), attribute_count=2)


def _grads(loss: torch.Tensor, module: torch.nn.Module) -> float:
    params = [p for p in module.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return float(sum(g.abs().sum() for g in grads if g is not None))


def test_each_loss_term_moves_its_network_and_only_it() -> None:
    from dctnet.losses.content import content_loss, total_variation
    from dctnet.losses.representations import random_grey_weights, surface, texture
    from dctnet.losses.self_similarity import self_similarity_loss

    module = _module()
    photo, cartoon = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    labels = torch.rand(2, 2)
    grey = random_grey_weights(torch.Generator().manual_seed(0))
    fake = module.stylize(photo)
    terms = {
        "surface": module.g_loss_fn(module.d_surface(surface(fake))),
        "texture": module.g_loss_fn(module.d_texture(texture(fake, grey))),
        "content": content_loss(module.vgg(fake), module.vgg(photo)),
        "tv": total_variation(fake),
        "self_similarity": self_similarity_loss(fake, photo, cells=8),
        "face": torch.nn.functional.l1_loss(module.regressor(fake), labels),
    }
    for name, term in terms.items():
        assert _grads(term, module.generator) > 0, f"{name} does not reach the generator"
        assert all(p.grad is None for p in module.vgg.parameters())
    assert not any(p.requires_grad for p in module.vgg.parameters())  # VGG stays frozen
    # discriminator losses move the discriminators but not the generator (fakes are detached)
    d_loss = module.d_loss_fn(module.d_surface(surface(cartoon)), module.d_surface(surface(fake.detach())))
    assert _grads(d_loss, module.d_surface) > 0 and _grads(d_loss, module.generator) == 0
    d_loss = module.d_loss_fn(module.d_texture(texture(cartoon, grey)), module.d_texture(texture(fake.detach(), grey)))
    assert _grads(d_loss, module.d_texture) > 0 and _grads(d_loss, module.d_surface) == 0
    regressor_fit = torch.nn.functional.l1_loss(module.regressor(photo), labels)
    assert _grads(regressor_fit, module.regressor) > 0


def test_identity_face_loss_reaches_the_generator() -> None:
    module = _module("identity")
    photo = torch.rand(2, 3, 32, 32) * 2 - 1
    fake = module.stylize(photo)
    loss = (1 - torch.nn.functional.cosine_similarity(module.identity(fake), module.identity(photo))).mean()
    assert _grads(loss, module.generator) > 0 and module.regressor is None


def test_expression_loss_without_labels_is_a_clear_error() -> None:
    loss = config_node("ttn.loss", TTNLossConfig, vgg_pretrained=False)
    with pytest.raises(ValueError, match="attributes.csv"):
        TTNModule(tiny_recipe(loss), "unused", 0, attribute_count=0)


def _paired_scores(model_path: Path, root: Path) -> tuple[float, float, float, float]:
    ttn = load_ttn(model_path)
    photos = torch.stack([to_tensor(read_image(p)) for p in list_images(root / "test_photos")])
    targets = torch.stack([to_tensor(read_image(p)) for p in list_images(root / "test_cartoons")])
    with torch.no_grad():
        outputs = ttn(photos)
    l1_in, l1_out = (photos - targets).abs().mean().item(), (outputs - targets).abs().mean().item()
    unit = lambda t: (t + 1) / 2  # noqa: E731
    ssim_in = ssim(unit(photos), unit(targets), data_range=1.0).item()
    ssim_out = ssim(unit(outputs), unit(targets), data_range=1.0).item()
    return l1_in, l1_out, ssim_in, ssim_out


@pytest.mark.slow
def test_translation_moves_64px_photos_toward_the_paired_cartoons(tmp_path_factory: pytest.TempPathFactory,
                                                                  tmp_path: Path) -> None:
    root = ensure_dataset(tmp_path_factory.mktemp("synthetic64"), size=64, photos=200, cartoons=100, test=16, seed=3)
    cfg = make_config("ttn", tiny_overrides(root, tmp_path) + [
        "data.size=64", "ttn/loss=cpu_small", "ttn/model=unet_small", "ttn.steps=200", "ttn.batch_size=8",
        "ttn.warmup_steps=40", "ttn.lr_g=5e-4", "ttn.lr_d=5e-4", "ttn.discriminator.channels=[32,64,128]"])
    path = train_ttn(cfg)
    l1_in, l1_out, ssim_in, ssim_out = _paired_scores(path, root)
    print(f"64 px, 200 iterations: paired L1 input {l1_in:.4f} -> output {l1_out:.4f}; "
          f"SSIM input {ssim_in:.4f} -> output {ssim_out:.4f}")
    # Measured (fp32, 2-core Xeon without bf16): 200 iterations L1 0.2695 -> 0.2090 (0.78x), SSIM 0.4877 -> 0.5718
    # (+0.084) in 119 s; 300: 0.76x, +0.105 in 173 s; 500: 0.72x, +0.124 in 302 s (unpaired training: the pairs
    # only score). A blurred copy of the input (the old recipe) scored 0.99x and +0.00: the margins below catch it.
    assert l1_out < 0.85 * l1_in
    assert ssim_out > ssim_in + 0.06


def test_resumed_run_ends_with_the_same_weights_as_an_uninterrupted_one(synthetic_root: Path, tmp_path: Path) -> None:
    whole = make_config("ttn", tiny_overrides(synthetic_root, tmp_path / "whole") + ["trainer.max_steps=6"])
    a_path = train_ttn(whole)
    train_ttn(make_config("ttn", tiny_overrides(synthetic_root, tmp_path / "split") + ["trainer.max_steps=3"]))
    halfway = load_file(tmp_path / "split" / "ttn" / "ttn.safetensors")
    b_path = train_ttn(make_config("ttn", tiny_overrides(synthetic_root, tmp_path / "split") + ["trainer.max_steps=6"]))
    a, b = load_file(a_path), load_file(b_path)
    assert not torch.equal(halfway["stem.weight"], b["stem.weight"])
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)
    header = load_model_file(b_path, kind="ttn")[1]
    assert header["iterations"] == 6 and header["loss_recipe"] == "port"


def test_export_is_written_by_even_the_shortest_run_and_gem_can_be_off(synthetic_root: Path, tmp_path: Path) -> None:
    cfg = make_config("ttn", tiny_overrides(synthetic_root, tmp_path) + ["trainer.max_steps=1", "data/gem=none",
                                                                          "ttn/loss=official"])
    path = train_ttn(cfg)
    header = load_model_file(path, kind="ttn")[1]
    assert header["loss_recipe"] == "official" and header["iterations"] == 1
    assert (path.parent / "ttn.json").is_file() and (path.parent / "config.yaml").is_file()
    assert "enabled: false" in (path.parent / "config.yaml").read_text()


def test_instance_normalised_content_loss_keeps_layout_but_frees_feature_levels() -> None:
    from dctnet.losses.content import content_loss

    features = torch.randn(2, 8, 16, 16, generator=torch.Generator().manual_seed(0))
    levels = features * torch.rand(1, 8, 1, 1) * 3 + torch.randn(1, 8, 1, 1)  # a per-channel gain and offset
    assert content_loss(levels, features, "instance") < 1e-3 < 0.5 < content_loss(levels, features)
    assert content_loss(features.roll(4, -1), features, "instance") > 0.5  # moved content still costs
    with pytest.raises(ValueError, match="content norm"):
        content_loss(features, features, "batch")


def test_texture_discriminator_can_learn_strokes_from_another_folder(synthetic_root: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """``ttn.texture_cartoons`` feeds the texture discriminator's real side from its own folder."""
    white = tmp_path / "white"
    for k in range(3):
        write_image(white / f"{k}.png", np.full((32, 32, 3), 255, np.uint8))
    seen: list[torch.Tensor] = []
    real_texture = ttn_module.texture
    monkeypatch.setattr(ttn_module, "texture", lambda image, grey: seen.append(image.detach()) or real_texture(image, grey))
    train_ttn(make_config("ttn", tiny_overrides(synthetic_root, tmp_path / "run") + [
        "trainer.max_steps=1", "ttn.warmup_steps=0", f"ttn.texture_cartoons={white}"]))
    assert any(bool((image == 1).all()) for image in seen)  # the all-white folder reached the texture D
    seen.clear()
    train_ttn(make_config("ttn", tiny_overrides(synthetic_root, tmp_path / "default") + [
        "trainer.max_steps=1", "ttn.warmup_steps=0"]))
    assert seen and not any(bool((image == 1).all()) for image in seen)


def test_extra_cartoons_share_sets_how_often_the_extra_folders_are_drawn(synthetic_root: Path, tmp_path: Path) -> None:
    """``ttn.extra_cartoons_share`` repeats the extra folders (e.g. 32 exemplars beside 48 samples) until they make
    that share of the cartoon domain; null keeps the image counts; a share outside (0, 1) is refused."""
    from dctnet.ttn.train import build_datamodule

    samples, exemplars = synthetic_root / "photos", synthetic_root / "cartoons"  # 48 and 32 images
    base = tiny_overrides(synthetic_root, tmp_path) + [f"ttn.cartoons={samples}", f"ttn.extra_cartoons=[{exemplars}]"]

    def exemplar_share(share: str) -> float:
        files = build_datamodule(make_config("ttn", base + [f"ttn.extra_cartoons_share={share}"]), 1).dataset.folders[
            "cartoon"].files
        return sum(path.parent == exemplars for path in files) / len(files)

    assert exemplar_share("null") == pytest.approx(32 / 80)
    assert exemplar_share("0.5") == pytest.approx(64 / 112)  # 2 x 32 beside 48: the nearest whole repeat
    assert exemplar_share("0.8") == pytest.approx(192 / 240)  # 6 x 32 beside 48
    with pytest.raises(ValueError, match="extra_cartoons_share"):
        exemplar_share("1.0")


def test_extra_cartoon_folders_are_merged_into_the_cartoon_domain(synthetic_root: Path, tmp_path: Path) -> None:
    """``ttn.extra_cartoons`` adds folders (e.g. the exemplars beside the calibrated samples) to the domain."""
    from dctnet.data.datamodule import GANDataModule, loader_options

    calibrated = synthetic_root / "test_cartoons"
    data = GANDataModule({"photo": str(synthetic_root / "photos"),
                          "cartoon": [str(calibrated), str(synthetic_root / "cartoons")]},
                         size=32, batch_size=4, seed=0, total_iterations=1, **loader_options())
    data.setup()
    merged = data.dataset.folders["cartoon"]
    assert len(merged) == len(list_images(calibrated)) + len(list_images(synthetic_root / "cartoons"))
    assert {p.parent.name for p in merged.files} == {"test_cartoons", "cartoons"}
    path = train_ttn(make_config("ttn", tiny_overrides(synthetic_root, tmp_path) + [
        "trainer.max_steps=1", f"ttn.cartoons={calibrated}", f"ttn.extra_cartoons=[{synthetic_root / 'cartoons'}]"]))
    assert path.is_file()


def test_init_from_starts_training_at_the_given_model_and_refuses_another_shape(synthetic_root: Path,
                                                                                 tmp_path: Path) -> None:
    from dctnet.checkpoints import CheckpointError

    trained = train_ttn(make_config("ttn", tiny_overrides(synthetic_root, tmp_path / "a") + ["trainer.max_steps=6"]))
    still = ["trainer.max_steps=1", "ttn.lr_g=1e-12", "ttn.lr_d=1e-12", f"ttn.init_from={trained}"]
    started = train_ttn(make_config("ttn", tiny_overrides(synthetic_root, tmp_path / "b") + still))
    fresh = train_ttn(make_config("ttn", tiny_overrides(synthetic_root, tmp_path / "c") + still[:3]))
    a, b, c = load_file(trained), load_file(started), load_file(fresh)
    for key in a:  # one iteration at a negligible learning rate: still the given model, not a random init
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-6, msg=key)
    assert any(not torch.allclose(c[key], a[key], atol=1e-3) for key in a)
    wider = ["trainer.max_steps=1", f"ttn.init_from={trained}", "ttn.model.base_channels=16"]
    with pytest.raises(CheckpointError, match="ttn.model asks for base_channels=16"):
        train_ttn(make_config("ttn", tiny_overrides(synthetic_root, tmp_path / "d") + wider))


def test_fine_tuning_trains_the_discriminators_alone_first_then_ramps_the_generator(synthetic_root: Path,
                                                                                      tmp_path: Path) -> None:
    """ttn.init_from: no reconstruction warm-up, G frozen for init_from_d_steps, then G moves."""
    trained = load_file(train_ttn(make_config("ttn", tiny_overrides(synthetic_root, tmp_path / "a") +
                                              ["trainer.max_steps=4"])))
    tune = [f"ttn.init_from={tmp_path / 'a' / 'ttn' / 'ttn.safetensors'}", "ttn.lr_g=5e-3", "ttn.lr_d=5e-3",
            "ttn.warmup_steps=5", "ttn.init_from_d_steps=2", "ttn.init_from_lr_ramp=1", "trainer.log_every_n_steps=1"]
    held = load_file(train_ttn(make_config("ttn", tiny_overrides(synthetic_root, tmp_path / "b") + tune +
                                           ["trainer.max_steps=2"])))
    for key in trained:
        torch.testing.assert_close(held[key], trained[key], rtol=0, atol=0, msg=key)
    logs = next((tmp_path / "b" / "ttn" / "logs").rglob("metrics.csv")).read_text()
    assert "d_surface" in logs and "g_total" not in logs and "reconstruction" not in logs
    moved = load_file(train_ttn(make_config("ttn", tiny_overrides(synthetic_root, tmp_path / "c") + tune +
                                            ["trainer.max_steps=3"])))
    assert any(not torch.equal(moved[key], trained[key]) for key in trained)
    logs = next((tmp_path / "c" / "ttn" / "logs").rglob("metrics.csv")).read_text()
    assert "g_total" in logs and "reconstruction" not in logs  # adversarial at once: the warm-up is skipped


def test_lr_decay_from_lowers_both_learning_rates_linearly_to_the_end_of_the_run(synthetic_root: Path,
                                                                                 tmp_path: Path) -> None:
    """``ttn.lr_decay_from=0.5`` over 4 iterations: full lrs for iterations 0-1, then 1 and 1/2 of them; the last
    checkpoint holds the last lrs, and the weights differ from a constant-lr run's."""
    common = tiny_overrides(synthetic_root, tmp_path) + ["trainer.max_steps=4", "trainer.checkpoint_every=1",
                                                         "ttn.lr_g=4e-3", "ttn.lr_d=2e-3"]
    decayed = load_file(train_ttn(make_config("ttn", common + ["run_dir=" + str(tmp_path / "d"),
                                                                "ttn.lr_decay_from=0.5"])))
    checkpoint = torch.load(tmp_path / "d" / "ttn" / "checkpoints" / "last.ckpt", weights_only=True)
    lrs = [state["param_groups"][0]["lr"] for state in checkpoint["optimizer_states"]]
    assert lrs == pytest.approx([2e-3 * 0.5, 4e-3 * 0.5])  # discriminators, generator at iteration 3
    constant = load_file(train_ttn(make_config("ttn", common + ["run_dir=" + str(tmp_path / "c")])))
    assert any(not torch.equal(decayed[key], constant[key]) for key in constant)


def test_box_filter_is_the_window_mean_with_reflected_borders():
    """The separable box filter equals a direct (2r+1)^2 window mean over the reflect-padded image."""
    from dctnet.losses.representations import box_filter

    image = torch.randn(1, 2, 12, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    radius = 2
    padded = np.pad(image.numpy(), [(0, 0), (0, 0), (radius, radius), (radius, radius)], mode="reflect")
    expected = np.zeros_like(image.numpy())
    for y in range(12):
        for x in range(10):
            expected[..., y, x] = padded[..., y:y + 2 * radius + 1, x:x + 2 * radius + 1].mean(axis=(-2, -1))
    assert np.allclose(box_filter(image, radius).numpy(), expected, atol=1e-12)


def test_box_filter_valid_border_averages_only_the_pixels_inside():
    """``border="valid"`` (the official code's zero padding divided by the count) equals a direct window mean
    over the pixels inside the image, at every border and corner."""
    from dctnet.losses.representations import box_filter

    image = torch.randn(1, 2, 9, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    radius = 3
    expected = torch.zeros_like(image)
    for y in range(9):
        for x in range(7):
            window = image[..., max(y - radius, 0):y + radius + 1, max(x - radius, 0):x + radius + 1]
            expected[..., y, x] = window.mean(dim=(-2, -1))
    assert torch.allclose(box_filter(image, radius, border="valid"), expected, atol=1e-12)


def test_box_filter_stays_exact_in_float32_on_large_images():
    """Running sums over a 1024 px row must not lose the window's value to rounding (inference filters full
    images in fp32): within 1e-5 of the float64 result on a positive image, the worst case for cancellation."""
    from dctnet.losses.representations import box_filter

    image = torch.rand(1, 1, 1024, 1024, generator=torch.Generator().manual_seed(2)) + 1.0
    exact = box_filter(image.double(), 5)
    assert (box_filter(image, 5).double() - exact).abs().max() < 1e-5
