"""The colour-layout loss: free to change the palette, not to paint every face alike (dctnet/losses/colour_layout.py)."""

from __future__ import annotations

import pytest
import torch

from dctnet.losses.colour_layout import colour_layout_loss


def _portraits(skin: torch.Tensor, size: int = 32) -> torch.Tensor:
    """Toy portraits: a background of a colour per image, a centred square 'face' in each row of ``skin``, a dark
    'shirt'. Backgrounds differ from image to image, as the synthetic photos' do."""
    n = skin.shape[0]
    background = torch.rand(n, 3, generator=torch.Generator().manual_seed(7)) * 1.6 - 0.8
    images = background[:, :, None, None].repeat(1, 1, size, size)
    images[:, :, size // 4: 3 * size // 4, size // 4: 3 * size // 4] = skin[:, :, None, None]
    images[:, :, 7 * size // 8:, :] = -0.6
    return images


def _skin(n: int, seed: int = 0) -> torch.Tensor:
    """Skin colours from dark brown to light peach (in [-1, 1]), one per portrait."""
    tone = torch.rand(n, 1, generator=torch.Generator().manual_seed(seed))
    return torch.cat([-0.3 + 1.2 * tone, -0.5 + 1.1 * tone, -0.6 + tone], 1)


def test_a_new_palette_is_free_but_faces_painted_alike_are_not() -> None:
    source = _portraits(_skin(16))
    matrix = torch.tensor([[0.5, 0.2, 0.0], [0.1, 0.7, 0.1], [0.0, 0.3, 0.4]])
    recoloured = torch.einsum("ij,njhw->nihw", matrix, source) + torch.tensor([0.3, -0.1, 0.2])[None, :, None, None]
    alike = _portraits(torch.tensor([0.9, 0.6, 0.4]).expand(16, 3))  # every face one light tone
    palette, painted = colour_layout_loss(recoloured, source).item(), colour_layout_loss(alike, source).item()
    faint = colour_layout_loss(0.1 * alike, source).item()  # the same, at a tenth of the contrast
    print(f"1 - R^2: recoloured {palette:.4f}, faces alike {painted:.3f} (at 0.1x contrast {faint:.3f})")
    assert palette < 1e-3
    assert painted > 0.1 and painted > 100 * palette
    assert abs(faint - painted) < 1e-3  # lowering the contrast is no way out


def test_the_gradient_gives_each_face_back_its_own_tone() -> None:
    """Minimising the loss from faces painted alike separates them again, in the source's order of tone."""
    skin = _skin(12, seed=1)
    source = _portraits(skin)
    face = torch.tensor([0.9, 0.6, 0.4]).expand(12, 3).clone().requires_grad_(True)
    optimiser = torch.optim.Adam([face], lr=0.02)
    start = colour_layout_loss(_portraits(face), source).item()
    for _ in range(300):
        optimiser.zero_grad()
        loss = colour_layout_loss(_portraits(face), source)
        loss.backward()
        optimiser.step()
    brightness = face.detach().mean(1)
    order = torch.corrcoef(torch.stack([brightness, skin.mean(1)]))[0, 1].item()
    print(f"loss {start:.3f} -> {loss.item():.4f}; brightness correlation with the source's tones {order:.3f}")
    assert loss.item() < 0.1 * start
    assert order > 0.95


def test_it_stays_fp32_under_bf16_autocast_and_checks_shapes() -> None:
    source = _portraits(_skin(8))
    image = (source * 0.5 + 0.1).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = colour_layout_loss(image, source)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    with pytest.raises(ValueError, match="differ in shape"):
        colour_layout_loss(source[:4], source)

# That its gradient reaches the adapted G and not G_src: tests/test_self_similarity.py, for both anchor losses.
