"""bf16-mixed training (`trainer.precision`): both stages run, the fp32 islands stay fp32, `auto` resolves."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import make_config, tiny_overrides
from safetensors.torch import load_file

import dctnet.precision as precision
from dctnet.ccn.train import source_cache_key, train_ccn
from dctnet.losses.representations import guided_filter
from dctnet.ttn.train import train_ttn


def test_guided_filter_is_fp32_and_accurate_under_bf16_autocast() -> None:
    """The filter's variance E[g^2] - E[g]^2 cancels in bf16 (error ~0.7 with a self-guided, small-eps filter,
    measured); under autocast it must still match fp32 up to the bf16 rounding of its input."""
    image = 0.5 + 0.1 * torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    expected = guided_filter(image, image, 1, 1e-4)
    conv = torch.nn.Conv2d(3, 3, 1)  # a bf16 producer, as the U-Net is under autocast
    conv.weight.data = torch.eye(3).view(3, 3, 1, 1)
    conv.bias.data.zero_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        produced = conv(image)
        assert produced.dtype == torch.bfloat16
        filtered = guided_filter(produced, produced, 1, 1e-4)
    assert filtered.dtype == torch.float32
    assert (filtered - expected).abs().max() < 1e-2  # bf16 keeps 8 bits: 2e-3 at 0.6


def test_auto_precision_follows_the_cpu_bf16_units(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
    assert precision.resolve_precision("auto", "cpu") == "bf16-mixed"
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2"}))
    assert precision.resolve_precision("auto", "auto") == "32-true"
    assert precision.resolve_precision("bf16-mixed", "cpu") == "bf16-mixed"  # an explicit choice is kept


def test_both_stages_train_and_export_in_bf16_mixed(synthetic_root: Path, tmp_path: Path) -> None:
    overrides = tiny_overrides(synthetic_root, tmp_path) + ["trainer.max_steps=4", "trainer.precision=bf16-mixed",
                                                            "ccn.pretrain.r1_every=2", "ccn.pretrain.path_every=2"]
    outputs = train_ccn(make_config("ccn", overrides))
    for stage in ("pretrain", "adapt"):
        weights = load_file(outputs[stage])
        assert all(t.dtype == torch.float32 and torch.isfinite(t).all() for t in weights.values()), stage
    exported = load_file(train_ttn(make_config("ttn", overrides + [f"ttn.cartoons={outputs['calibrated']}"])))
    assert all(t.dtype == torch.float32 and torch.isfinite(t).all() for t in exported.values())


def test_bf16_trains_another_cached_source_and_fp32_keys_are_unchanged(synthetic_root: Path, tmp_path: Path) -> None:
    base = tiny_overrides(synthetic_root, tmp_path)
    fp32 = source_cache_key(make_config("ccn", base))
    assert source_cache_key(make_config("ccn", base + ["trainer.precision=32-true"])) == fp32
    assert source_cache_key(make_config("ccn", base + ["trainer.precision=bf16-mixed"])) != fp32
