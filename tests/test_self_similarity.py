"""The self-similarity structure loss: free to restyle, not to paint content away (dctnet/losses/self_similarity.py)."""

from __future__ import annotations

import pytest
import torch

from dctnet.ccn.module import CCNModule, build_generator
from dctnet.config import CCNStageConfig, StyleGANConfig, config_node
from dctnet.losses.colour_layout import colour_layout_loss
from dctnet.losses.self_similarity import self_similarity_loss


def _portraits(n: int, long_hair: bool, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Toy portraits in [-1, 1]: a background of a colour per image, a hair block behind a face, a shirt; with
    ``long_hair`` the hair also falls beside the face down to the shoulders."""
    colours = torch.rand(n, 4, 3, generator=torch.Generator().manual_seed(seed)) * 1.6 - 0.8
    background, hair, face, shirt = (colours[:, k, :, None, None] for k in range(4))
    images = background.repeat(1, 1, size, size)
    q = size // 8
    images[:, :, q:4 * q, 2 * q:6 * q] = hair
    if long_hair:
        images[:, :, 3 * q:7 * q, q:7 * q] = hair
    images[:, :, 2 * q:6 * q, 3 * q:5 * q] = face
    images[:, :, 7 * q:, :] = shirt
    return images


def test_a_new_style_is_nearly_free_but_hair_painted_away_is_not() -> None:
    source = _portraits(8, long_hair=True)
    matrix = torch.tensor([[0.9, 0.2, 0.0], [0.1, 0.8, 0.1], [0.0, 0.3, 0.7]])  # another palette ...
    restyled = 1.6 * torch.einsum("ij,njhw->nihw", matrix, source) + 0.2  # ... more contrast, a lift
    short_haired = _portraits(8, long_hair=False)  # the same portraits with the long hair painted as background
    style, painted = self_similarity_loss(restyled, source).item(), self_similarity_loss(short_haired, source).item()
    print(f"structure loss: restyled {style:.4f}, long hair painted away {painted:.4f}")
    assert style < 0.15
    assert painted > 4 * style


def test_its_gradient_gives_the_long_hair_back() -> None:
    """Minimising it from short-haired portraits paints the long hair's cells like the hair again, not like the
    background (in each image's own colours: the loss leaves the palette free)."""
    source = _portraits(4, long_hair=True)
    image = _portraits(4, long_hair=False).requires_grad_(True)
    optimiser = torch.optim.Adam([image], lr=0.01)
    q = 32 // 8

    def hair_likeness(img: torch.Tensor) -> float:
        """How much nearer the cells beside the face are to the hair above it than to the background corner."""
        beside = img[:, :, 4 * q:6 * q, q:2 * q].mean((2, 3))
        hair, corner = img[:, :, q:2 * q, 3 * q:5 * q].mean((2, 3)), img[:, :, :q, :q].mean((2, 3))
        return ((beside - corner).norm(dim=1) - (beside - hair).norm(dim=1)).mean().item()

    start_loss, start = self_similarity_loss(image, source).item(), hair_likeness(image.detach())
    for _ in range(200):
        optimiser.zero_grad()
        loss = self_similarity_loss(image, source)
        loss.backward()
        optimiser.step()
    end = hair_likeness(image.detach())
    print(f"loss {start_loss:.3f} -> {loss.item():.3f}; hair likeness beside the face {start:.3f} -> {end:.3f}")
    assert loss.item() < 0.2 * start_loss
    assert start < 0 < end  # background-like before, hair-like after


def test_it_stays_fp32_under_bf16_autocast_and_checks_shapes() -> None:
    source = _portraits(4, long_hair=True)
    image = (source * 0.5).to(torch.bfloat16).requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = self_similarity_loss(image, source)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss) and torch.isfinite(image.grad).all()
    with pytest.raises(ValueError, match="differ in shape"):
        self_similarity_loss(source[:2], source)


@pytest.mark.parametrize("loss_name", ["colour_layout", "self_similarity"])
def test_each_anchor_loss_reaches_the_adapted_g_and_not_g_src(loss_name: str) -> None:
    """(That the adapt step adds them is tests/test_config_keys_ccn.py's: each weight changes the run.)"""
    loss_fn = {"colour_layout": colour_layout_loss, "self_similarity": self_similarity_loss}[loss_name]
    model = config_node("ccn.model", StyleGANConfig, size=16, style_dim=32, n_mlp=2, channel_multiplier=1,
                        channel_max=16)
    torch.manual_seed(0)
    source_state = {"g_ema": build_generator(model).state_dict()}
    stage = config_node("ccn.adapt", CCNStageConfig, batch_size=4, **{f"{loss_name}_weight": 5.0,
                                                                      f"{loss_name}_cells": 4})
    module = CCNModule(model, stage, "adapt", "unused", 0, source_state=source_state)
    with torch.no_grad():  # G differs from G_src, as after some adaptation
        for p in module.generator.parameters():
            p.add_(0.2 * torch.randn_like(p))
    z = [torch.randn(4, model.style_dim)]
    fake, _ = module.generator(z, randomize_noise=False)
    with torch.no_grad():
        reference, _ = module.source(z, randomize_noise=False)
    loss = loss_fn(fake, reference, 4)
    loss.backward()
    assert loss.item() > 1e-3  # each loss's value here: 0.62 (colour layout), 0.28 (self-similarity)
    assert module.generator.convs[0].conv.weight.grad.abs().sum() > 0
    assert module.generator.to_rgbs[0].conv.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in module.source.parameters())
