"""Source shading gives each calibrated sample its G_src face's tone relative to the typical face, and nothing else."""

from __future__ import annotations

import pytest
import torch

from dctnet.ccn.source_shading import MAX_FACTOR, SourceShading, coarse_colours

PEACH = torch.tensor([1.0, 0.84, 0.70])


def faces(tones: list[float], colour: torch.Tensor | None = None, size: int = 64) -> torch.Tensor:
    """A batch in [-1, 1]: grey background, a central square face of ``colour`` scaled by each tone, a black
    outline ring around it."""
    batch = torch.full((len(tones), 3, size, size), 0.5)
    for k, tone in enumerate(tones):
        face = (colour if colour is not None else torch.ones(3)) * tone
        batch[k, :, 16:48, 16:48] = face[:, None, None]
        batch[k, :, 15, 15:49] = batch[k, :, 48, 15:49] = 0.0
    return batch * 2 - 1


def face_colour(batch: torch.Tensor) -> torch.Tensor:
    """Mean colour of each face's centre (well inside the square), in [0, 1] units."""
    return ((batch[:, :, 24:40, 24:40] + 1) / 2).mean((2, 3))


def test_a_darker_source_face_darkens_its_cartoon_by_the_same_ratio() -> None:
    tones = [0.8, 0.8, 0.8, 0.4]  # the last photo face is half as bright as the others
    sources = faces(tones)
    cartoons = faces([1.0] * 4, PEACH)  # the adapted G paints every face peach
    shading = SourceShading.fit([(cartoons, sources)], cells=8, strength=1.0)
    out = shading.apply(cartoons, sources)
    typical, dark = face_colour(out)[0], face_colour(out)[3]
    assert torch.allclose(dark, PEACH * 0.5, atol=0.02)  # brown-ish: half the typical face's brightness
    assert torch.allclose(typical, PEACH, atol=0.02)  # the common faces keep the exemplars' colour
    assert torch.allclose(out[:, :, :4, :4], cartoons[:, :, :4, :4], atol=1e-5)  # so does the same background


def test_what_the_cartoon_already_kept_is_not_applied_twice() -> None:
    tones = [0.8, 0.8, 0.8, 0.4]
    sources = faces(tones)
    cartoons = faces([1.0, 1.0, 1.0, 0.5], PEACH)  # the cartoon generator kept the dark face
    shading = SourceShading.fit([(cartoons, sources)], cells=8, strength=1.0)
    assert torch.allclose(shading.apply(cartoons, sources), cartoons, atol=1e-5)


def test_strength_zero_changes_nothing_and_black_outlines_stay_black() -> None:
    sources, cartoons = faces([0.9, 0.3]), faces([1.0, 1.0], PEACH)
    unchanged = SourceShading.fit([(cartoons, sources)], cells=8, strength=0.0).apply(cartoons, sources)
    assert torch.equal(unchanged, cartoons)
    out = SourceShading.fit([(cartoons, sources)], cells=8, strength=1.0).apply(cartoons, sources)
    assert (out[:, :, 15, 16:48] == -1).all()  # the outline ring: black times any factor is black
    assert out.min() >= -1 and out.max() <= 1


def test_the_factor_is_bounded() -> None:
    sources = faces([1.0, 0.0])  # a pitch-black source face: its ratio would be zero without the floor
    cartoons = faces([1.0, 1.0], torch.full((3,), 0.2))
    out = SourceShading.fit([(cartoons, sources)], cells=8, strength=1.0).apply(cartoons, sources)
    factor = face_colour(out)[1] / 0.2
    assert (factor >= 1 / MAX_FACTOR - 1e-3).all()


def test_streamed_typical_colours_equal_one_batch_medians() -> None:
    generator = torch.Generator().manual_seed(0)
    sources, cartoons = (torch.rand(6, 3, 32, 32, generator=generator) * 2 - 1 for _ in range(2))
    whole = SourceShading.fit([(cartoons, sources)], cells=4, strength=1.0)
    halves = SourceShading.fit([(cartoons[:2], sources[:2]), (cartoons[2:], sources[2:])], cells=4, strength=1.0)
    assert torch.equal(whole.source_typical, halves.source_typical)
    assert torch.equal(whole.cartoon_typical, halves.cartoon_typical)
    assert whole.source_typical.shape == (3, 4, 4)
    assert torch.allclose(whole.source_typical, coarse_colours(sources, 4).quantile(0.5, dim=0))
    assert not torch.allclose(whole.source_typical, whole.cartoon_typical)


def test_bad_probe_sets_are_refused() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        SourceShading.fit([(torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 16, 16))], cells=4, strength=1.0)
    with pytest.raises(ValueError, match="at least one"):
        SourceShading.fit([], cells=4, strength=1.0)
