"""The batched superpixel mean-colour image used by the structure (superpixel) loss."""

from __future__ import annotations

import torch

from dctnet.losses.superpixel import superpixel_mean


def test_flat_regions_are_kept_and_noise_is_averaged_out() -> None:
    torch.manual_seed(0)
    clean = torch.full((2, 3, 32, 32), -0.5)
    clean[:, :, :, 16:] = 0.6  # two flat halves
    clean[1, 0, 8:24, 4:12] = 0.9  # and a red block in the second image
    noisy = clean + 0.05 * torch.randn_like(clean)
    filled = superpixel_mean(noisy, segments=16)
    assert filled.shape == noisy.shape and not filled.requires_grad
    assert (filled - clean).abs().mean() < 0.25 * (noisy - clean).abs().mean()  # noise averaged within segments
    assert (filled - clean).abs().amax() < 0.3  # no segment straddles the strong edges
    assert len(torch.unique(filled[0, 0].round(decimals=4))) <= 16  # at most one colour per segment


def test_each_image_is_segmented_on_its_own() -> None:
    a, b = torch.rand(1, 3, 24, 24) * 2 - 1, torch.rand(1, 3, 24, 24) * 2 - 1
    together = superpixel_mean(torch.cat([a, b]), segments=9)
    assert torch.allclose(together[1:], superpixel_mean(b, segments=9))
