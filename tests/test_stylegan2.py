"""rosinality compatibility: key layout, strict loading of `.pt` checkpoints, outputs against a reference."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import dctnet.models.stylegan2 as sg
from dctnet.ccn.source import load_source
from dctnet.checkpoints import CheckpointError, load_torch_file
from dctnet.config import StyleGANConfig, config_node
from dctnet.models.stylegan2 import Discriminator, Generator


def upfirdn2d_reference(x, kernel, up=1, down=1, pad=(0, 0)):
    """rosinality's `upfirdn2d_native` algorithm (channels-last reshape formulation), written independently."""
    pad_x0, pad_x1, pad_y0, pad_y1 = pad[0], pad[1], pad[0], pad[1]
    _, channel, in_h, in_w = x.shape
    x = x.reshape(-1, in_h, in_w, 1)
    _, in_h, in_w, minor = x.shape
    kernel_h, kernel_w = kernel.shape
    out = x.view(-1, in_h, 1, in_w, 1, minor)
    out = F.pad(out, [0, 0, 0, up - 1, 0, 0, 0, up - 1])
    out = out.view(-1, in_h * up, in_w * up, minor)
    out = F.pad(out, [0, 0, max(pad_x0, 0), max(pad_x1, 0), max(pad_y0, 0), max(pad_y1, 0)])
    out = out[:, max(-pad_y0, 0): out.shape[1] - max(-pad_y1, 0), max(-pad_x0, 0): out.shape[2] - max(-pad_x1, 0), :]
    out = out.permute(0, 3, 1, 2)
    out = out.reshape([-1, 1, in_h * up + pad_y0 + pad_y1, in_w * up + pad_x0 + pad_x1])
    w = torch.flip(kernel, [0, 1]).view(1, 1, kernel_h, kernel_w)
    out = F.conv2d(out, w)
    out = out.reshape(-1, minor, in_h * up + pad_y0 + pad_y1 - kernel_h + 1, in_w * up + pad_x0 + pad_x1 - kernel_w + 1)
    out = out.permute(0, 2, 3, 1)[:, ::down, ::down, :]
    out_h = (in_h * up + pad_y0 + pad_y1 - kernel_h) // down + 1
    out_w = (in_w * up + pad_x0 + pad_x1 - kernel_w) // down + 1
    return out.reshape(-1, channel, out_h, out_w)


def modulated_conv_reference(self, x, style):
    """rosinality's fused ModulatedConv2d path: per-sample weights as one grouped convolution."""
    batch, in_channel, height, width = x.shape
    style = self.modulation(style).view(batch, 1, in_channel, 1, 1)
    weight = self.scale * self.weight * style
    if self.demodulate:
        weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8).view(batch, self.out_channel, 1, 1, 1)
    k = self.kernel_size
    if self.upsample:
        weight = weight.transpose(1, 2).reshape(batch * in_channel, self.out_channel, k, k)
        out = F.conv_transpose2d(x.reshape(1, batch * in_channel, height, width), weight, padding=0, stride=2,
                                 groups=batch)
        return self.blur(out.view(batch, self.out_channel, out.shape[2], out.shape[3]))
    weight = weight.view(batch * self.out_channel, in_channel, k, k)
    if self.downsample:
        x = self.blur(x)
        height, width = x.shape[2:]
    out = F.conv2d(x.reshape(1, batch * in_channel, height, width), weight,
                   padding=0 if self.downsample else self.padding, stride=2 if self.downsample else 1, groups=batch)
    return out.view(batch, self.out_channel, out.shape[2], out.shape[3])


def expected_generator_keys(size: int, n_mlp: int) -> set[str]:
    """The state-dict keys of rosinality's Generator, spelled out from its model.py."""
    keys = {f"style.{i}.{p}" for i in range(1, n_mlp + 1) for p in ("weight", "bias")} | {"input.input"}

    def styled(prefix: str, upsample: bool) -> set[str]:
        out = {f"{prefix}.conv.weight", f"{prefix}.conv.modulation.weight", f"{prefix}.conv.modulation.bias",
               f"{prefix}.noise.weight", f"{prefix}.activate.bias"}
        return out | ({f"{prefix}.conv.blur.kernel"} if upsample else set())

    def to_rgb(prefix: str, upsample: bool) -> set[str]:
        out = {f"{prefix}.bias", f"{prefix}.conv.weight", f"{prefix}.conv.modulation.weight",
               f"{prefix}.conv.modulation.bias"}
        return out | ({f"{prefix}.upsample.kernel"} if upsample else set())

    keys |= styled("conv1", False) | to_rgb("to_rgb1", False)
    levels = int(math.log2(size)) - 2
    for k in range(levels):
        keys |= styled(f"convs.{2 * k}", True) | styled(f"convs.{2 * k + 1}", False) | to_rgb(f"to_rgbs.{k}", True)
    keys |= {f"noises.noise_{i}" for i in range(2 * levels + 1)}
    return keys


def test_generator_keys_match_rosinality_layout() -> None:
    g = Generator(32, 16, 3, channel_multiplier=1, channel_max=16)
    assert set(g.state_dict()) == expected_generator_keys(32, 3)
    assert g.n_latent == 8 and g.num_layers == 7


def test_config_f_shapes_and_size() -> None:
    with torch.device("meta"):
        g = Generator(256, 512, 8, channel_multiplier=2)
        d = Discriminator(256, channel_multiplier=2)
    state = g.state_dict()
    assert state["convs.6.conv.weight"].shape == (1, 512, 512, 3, 3)  # 64 px: 256 * 2 = 512
    assert state["convs.8.conv.weight"].shape == (1, 256, 512, 3, 3)  # 128 px: 128 * 2 from 512
    assert state["to_rgbs.5.conv.weight"].shape == (1, 3, 128, 1, 1)  # 256 px: 64 * 2 channels
    assert state["noises.noise_12"].shape == (1, 1, 256, 256)
    assert sum(p.numel() for p in g.parameters()) == 30_034_338  # regression guard for config-f 256
    assert d.state_dict()["convs.0.0.weight"].shape == (128, 3, 1, 1)
    assert d.state_dict()["final_linear.0.weight"].shape == (512, 512 * 16)


def test_upfirdn2d_matches_reference_for_every_use() -> None:
    x = torch.randn(2, 3, 9, 7)
    kernel = sg.make_kernel([1, 3, 3, 1])
    for up, down, pad in [(2, 1, (2, 1)), (1, 1, (2, 2)), (1, 2, (1, 1)), (1, 1, (1, 1)), (2, 1, (-1, 3))]:
        torch.testing.assert_close(sg.upfirdn2d(x, kernel * 4 if up > 1 else kernel, up, down, pad),
                                   upfirdn2d_reference(x, kernel * 4 if up > 1 else kernel, up, down, pad))


def test_generator_output_matches_reference_ops(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    g = Generator(32, 16, 2, channel_multiplier=1, channel_max=16).eval()
    d = Discriminator(32, channel_multiplier=1, channel_max=16).eval()
    for module in g.modules():
        if isinstance(module, sg.NoiseInjection):
            module.weight.data.fill_(0.3)  # make noise matter
    z = torch.randn(3, 16)
    with torch.no_grad():
        ours, _ = g([z], randomize_noise=False)
        ours_d = d(ours)
        again, _ = g([z], randomize_noise=False)
        monkeypatch.setattr(sg, "upfirdn2d", upfirdn2d_reference)
        monkeypatch.setattr(sg.ModulatedConv2d, "forward", modulated_conv_reference)
        reference, _ = g([z], randomize_noise=False)
        reference_d = d(reference)
    assert ours.shape == (3, 3, 32, 32)
    assert torch.equal(ours, again)  # fixed latent + fixed noise buffers = same image
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours_d, reference_d, rtol=1e-4, atol=1e-5)


def test_style_mixing_and_truncation_follow_rosinality_semantics() -> None:
    torch.manual_seed(1)
    g = Generator(16, 8, 2, channel_multiplier=1, channel_max=8).eval()
    z1, z2 = torch.randn(2, 8), torch.randn(2, 8)
    with torch.no_grad():
        _, latent = g([z1, z2], inject_index=2, return_latents=True, randomize_noise=False)
        w1, w2 = g.get_latent(z1), g.get_latent(z2)
        assert torch.allclose(latent[:, 1], w1) and torch.allclose(latent[:, 2], w2)
        mean = g.mean_latent(64)
        _, truncated = g([z1], truncation=0.5, truncation_latent=mean, return_latents=True)
        assert torch.allclose(truncated[:, 0], mean + 0.5 * (w1 - mean), atol=1e-6)


def _rosinality_checkpoint(path: Path, model: StyleGANConfig) -> dict:
    torch.manual_seed(2)
    g = Generator(model.size, model.style_dim, model.n_mlp, model.channel_multiplier, channel_max=model.channel_max)
    d = Discriminator(model.size, model.channel_multiplier, channel_max=model.channel_max)
    g_ema = Generator(model.size, model.style_dim, model.n_mlp, model.channel_multiplier, channel_max=model.channel_max)
    checkpoint = {"g": g.state_dict(), "d": d.state_dict(), "g_ema": g_ema.state_dict(),
                  "g_optim": torch.optim.Adam(g.parameters()).state_dict(),
                  "d_optim": torch.optim.Adam(d.parameters()).state_dict(),
                  "args": argparse.Namespace(size=model.size, channel_multiplier=model.channel_multiplier),
                  "ada_aug_p": 0.0, "latent_avg": torch.randn(model.style_dim)}
    torch.save(checkpoint, path)
    return checkpoint


def test_rosinality_checkpoint_loads_strictly_and_reproduces_images(tmp_path: Path) -> None:
    model = config_node("ccn.model", StyleGANConfig, size=16, style_dim=8, n_mlp=2, channel_multiplier=1, channel_max=8)
    saved = _rosinality_checkpoint(tmp_path / "550000.pt", model)
    source = load_source(tmp_path / "550000.pt", model)
    assert set(source) == {"g_ema", "d"}  # latent_avg is not used: sampling computes the mean latent
    original = Generator(16, 8, 2, 1, channel_max=8).eval()
    original.load_state_dict(saved["g_ema"])
    loaded = Generator(16, 8, 2, 1, channel_max=8).eval()
    loaded.load_state_dict(source["g_ema"], strict=True)
    z = torch.randn(2, 8)
    with torch.no_grad():
        assert torch.equal(original([z], randomize_noise=False)[0], loaded([z], randomize_noise=False)[0])


def test_mismatched_architecture_fails_with_the_keys_named(tmp_path: Path) -> None:
    model = config_node("ccn.model", StyleGANConfig, size=16, style_dim=8, n_mlp=2, channel_multiplier=1, channel_max=8)
    _rosinality_checkpoint(tmp_path / "g.pt", model)
    with pytest.raises(CheckpointError, match="does not fit Generator"):
        load_source(tmp_path / "g.pt", config_node("ccn.model", StyleGANConfig, size=32, style_dim=8, n_mlp=2,
                    channel_multiplier=1, channel_max=8))


class _Exploit:
    def __reduce__(self):
        return (Path.touch, (Path(self.target),))


def test_checkpoint_that_would_run_code_is_refused(tmp_path: Path) -> None:
    exploit = _Exploit()
    exploit.target = str(tmp_path / "pwned")
    torch.save({"g_ema": {}, "payload": exploit}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refused or unreadable"):
        load_torch_file(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()


def test_patch_discriminator_judges_local_patches_and_takes_a_whole_image_ds_weights() -> None:
    """A patch D returns one logit per position of its r px feature map, each blind to far-away pixels (what
    lets adaptation learn texture without the exemplars' layout), and loads a whole-image D's weights."""
    from dctnet.ccn.module import load_discriminator_weights

    torch.manual_seed(0)
    whole = Discriminator(32, 1, channel_max=16)
    patch = Discriminator(32, 1, channel_max=16, patch_resolution=8)
    load_discriminator_weights(patch, whole.state_dict(), "whole-image D")
    assert torch.equal(patch.convs[1].conv1[0].weight, whole.convs[1].conv1[0].weight)
    image = torch.randn(2, 3, 32, 32)
    logits = patch(image)
    assert logits.shape == (2, 64) and whole(image).shape == (2, 1)
    changed = image.clone()
    changed[:, :, :4, :4] += 3.0  # the top-left corner only
    moved = (patch(changed) - logits).abs().view(2, 8, 8).amax(0)
    assert moved[0, 0] > 0 and moved[4:, 4:].max() == 0  # the far patches did not see it
    assert torch.allclose(patch.score(logits), logits.mean(1))
    # image_weight: the whole-image logit first (the whole-image D's own, its weights loaded), then the same patches
    mixed = Discriminator(32, 1, channel_max=16, patch_resolution=8, image_weight=0.25)
    load_discriminator_weights(mixed, {**whole.state_dict(), **{k: v for k, v in patch.state_dict().items()
                                                                 if k.startswith("patch_head.")}}, "whole-image D")
    both = mixed(image)
    assert both.shape == (2, 65) and torch.allclose(both[:, :1], whole(image)) and torch.allclose(both[:, 1:], logits)
    assert torch.allclose(mixed.score(both), 0.25 * both[:, 0] + 0.75 * logits.mean(1))
    with pytest.raises(ValueError, match="power of two"):
        Discriminator(32, 1, channel_max=16, patch_resolution=6)
    with pytest.raises(ValueError, match="image_weight"):
        Discriminator(32, 1, channel_max=16, image_weight=0.25)
    with pytest.raises(CheckpointError, match="does not fit"):
        load_discriminator_weights(patch, {k: v for k, v in whole.state_dict().items() if "final" not in k}
                                   | {"extra.weight": torch.zeros(1)}, "a misfit D")
