"""Toonify baseline: project a photo into G_src's latent space, render the latent with the blended generator.

The paper's point about StyleGAN-based stylization is that inversion loses content: the projection error
(mean L1 between G_src(latent) and the photo, [-1, 1] units, at G's resolution) is recorded for every image.
Projection follows rosinality's projector.py (Adam on the latent from the mean W, lr ramp-up and cosine
ramp-down, pixel + perceptual loss) with fixed synthesis noise, so the latent alone carries the content.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F

from dctnet.ccn.module import build_generator, make_noise
from dctnet.ccn.sampling import blend_generators
from dctnet.checkpoints import CheckpointError, load_model_file, save_model
from dctnet.config import StyleGANConfig, ToonifyConfig
from dctnet.models.stylegan2 import Generator
from dctnet.models.vgg import VGGFeatures
from dctnet.precision import resolve_precision

KIND = "toonify"
LATENT_SPACES = ("w", "w_plus")


def projection_lr(t: float, lr: float, rampdown: float = 0.25, rampup: float = 0.05) -> float:
    """rosinality's schedule: linear ramp-up over the first 5 %, cosine ramp-down over the last 25 %."""
    ramp = min(1.0, (1.0 - t) / rampdown)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return lr * ramp * min(1.0, t / rampup)


@torch.no_grad()
def mean_w(generator: Generator, samples: int, seed: int = 0) -> torch.Tensor:
    """The mean of ``samples`` mapped latents (seeded: the projection's start does not depend on global RNG)."""
    z = torch.randn(samples, generator.style_dim, generator=torch.Generator().manual_seed(seed))
    return generator.style(z.to(next(generator.parameters()).device)).mean(0)


def project(source: Generator, targets: torch.Tensor, cfg: ToonifyConfig,
            vgg: VGGFeatures | None = None) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Targets ([-1, 1], G's size) -> (W+ latents, per-image projection L1, the noise used)."""
    if cfg.latent_space not in LATENT_SPACES:
        raise ValueError(f"toonify.latent_space must be one of {LATENT_SPACES}, got {cfg.latent_space!r}")
    device, n = targets.device, targets.shape[0]
    source = source.eval()
    for parameter in source.parameters():
        parameter.requires_grad_(False)
    start = mean_w(source, cfg.mean_latents)
    layers = source.n_latent if cfg.latent_space == "w_plus" else 1
    latent = start.detach().clone().view(1, 1, -1).repeat(n, layers, 1).requires_grad_(True)
    noise = make_noise(source, n, device, rng=torch.Generator().manual_seed(cfg.noise_seed))
    bf16 = resolve_precision(str(cfg.precision), device.type).startswith("bf16")  # any other value: fp32
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):  # fp32 copy once, not every step
        target_features = vgg(targets).float() if vgg is not None and cfg.perceptual > 0 else None
    optimizer = torch.optim.Adam([latent], lr=cfg.lr)

    def render() -> torch.Tensor:
        wplus = latent if layers > 1 else latent.repeat(1, source.n_latent, 1)
        return source([wplus], input_is_latent=True, noise=noise)[0]

    for step in range(cfg.steps):
        for group in optimizer.param_groups:
            group["lr"] = projection_lr(step / max(1, cfg.steps), cfg.lr)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            image = render()
            loss = cfg.pixel * F.l1_loss(image.float(), targets)
            if target_features is not None:
                loss = loss + cfg.perceptual * F.mse_loss(vgg(image).float(), target_features)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        error = (render() - targets).abs().mean(dim=(1, 2, 3))
        wplus = latent if layers > 1 else latent.repeat(1, source.n_latent, 1)
    return wplus.detach(), error, noise


class ToonifyBackend:
    """An inference backend (``stride``, batch in -> batch out, [-1, 1]): project, then render blended.

    Photos are resized to G's resolution for the projection and the result back to their size.
    ``errors`` collects each image's projection error.
    """

    stride = 1

    def __init__(self, source: Generator, blended: Generator, cfg: ToonifyConfig, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.source, self.blended, self.cfg = source.to(self.device).eval(), blended.to(self.device).eval(), cfg
        self.vgg = VGGFeatures(cfg.vgg_layer, cfg.vgg_pretrained, cfg.vgg_weights).to(self.device) \
            if cfg.perceptual > 0 else None
        self.errors: list[float] = []

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        height, width = batch.shape[-2:]
        size = self.source.size
        targets = F.interpolate(batch.to(self.device).float(), size=(size, size), mode="area")
        latent, error, noise = project(self.source, targets, self.cfg, self.vgg)
        self.errors += error.tolist()
        with torch.no_grad():
            image = self.blended([latent], input_is_latent=True, noise=noise)[0].clamp(-1, 1)
        return F.interpolate(image, size=(height, width), mode="bilinear", align_corners=False).cpu()


def export_toonify(path: str | Path, source: Generator, cartoon: Generator, model: StyleGANConfig,
                   blend_resolution: int, blend_width: float, cfg: ToonifyConfig, extra: dict | None = None) -> Path:
    """One file with G_src (for projection) and the blended generator (for rendering), plus the recipe."""
    blended = blend_generators(source, cartoon, blend_resolution, blend_width)
    state = {**{f"source.{k}": v for k, v in source.state_dict().items()},
             **{f"blended.{k}": v for k, v in blended.state_dict().items()}}
    arch = {"stylegan": asdict(model), "blend_resolution": blend_resolution, "blend_width": blend_width,
            "projection": asdict(cfg)}
    return save_model(path, state, kind=KIND, arch=arch, extra=extra)


def load_toonify(path: str | Path, device: str | torch.device = "cpu") -> ToonifyBackend:
    state, header = load_model_file(path, kind=KIND)
    try:
        model = StyleGANConfig(**header["arch"]["stylegan"])
        # files written before toonify.precision existed projected in fp32
        cfg = ToonifyConfig(**{"precision": "32-true", **header["arch"]["projection"]})
    except (KeyError, TypeError) as error:
        raise CheckpointError(f"{path}: its header does not describe a Toonify model ({error})") from None
    source, blended = build_generator(model), build_generator(model)
    source.load_state_dict({k[len("source."):]: v for k, v in state.items() if k.startswith("source.")})
    blended.load_state_dict({k[len("blended."):]: v for k, v in state.items() if k.startswith("blended.")})
    return ToonifyBackend(source, blended, cfg, device)
