"""Divergence guard: a learning rate that blows up is reported, rolled back or stopped, and never exported."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from conftest import make_config, tiny_overrides
from safetensors.torch import save_file

from dctnet.checkpoints import CheckpointError, load_model_file, save_model
from dctnet.gan_base import TrainingDiverged
from dctnet.ttn.train import train_ttn

# lr 0.05 makes the tiny TTN's discriminator losses explode in its first iteration (measured: d_surface 257).
EXPLODING = ["ttn.lr_g=0.05", "ttn.lr_d=0.05", "ttn.warmup_steps=0", "trainer.checkpoint_every=1"]


def test_an_exploding_run_stops_with_a_clear_error_and_exports_nothing(synthetic_root: Path, tmp_path: Path) -> None:
    cfg = make_config("ttn", tiny_overrides(synthetic_root, tmp_path) + EXPLODING + [
        "trainer.max_steps=12", "trainer.divergence.action=stop"])
    with pytest.raises(TrainingDiverged, match=r"diverged at iteration \d+: d_.*> trainer.divergence.max_d_loss.*"
                                               r"no model was exported") as error:
        train_ttn(cfg)
    # caught within the first iterations (which one depends on the random networks), long before the 12th
    assert int(re.search(r"iteration (\d+)", str(error.value)).group(1)) <= 3
    assert not (tmp_path / "ttn" / "ttn.safetensors").exists()


def test_rollback_resumes_from_the_last_good_checkpoint_with_lower_learning_rates(
        synthetic_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A healthy run continued at a learning rate that explodes rolls back to the checkpoint before the bad
    step (the guard sees it one iteration later, after last.ckpt was written) and finishes at 0.05 x 0.01 = 5e-4 with a finite export."""
    common = tiny_overrides(synthetic_root, tmp_path) + ["trainer.checkpoint_every=1", "ttn.warmup_steps=0"]
    before = load_model_file(train_ttn(make_config("ttn", common + ["trainer.max_steps=4"])), kind="ttn")[0]
    with caplog.at_level("WARNING"):
        path = train_ttn(make_config("ttn", common + EXPLODING + ["trainer.max_steps=8", "resume=force",
                                                                  "trainer.divergence.lr_factor=0.01"]))
    assert "diverged at iteration 5" in caplog.text and "previous.ckpt with" in caplog.text
    assert "learning rates x0.01 (rollback 1 of 2)" in caplog.text
    state, header = load_model_file(path, kind="ttn")  # loading refuses non-finite weights
    assert header["iterations"] == 8 and not torch.equal(state["stem.weight"], before["stem.weight"])


def test_rollbacks_are_bounded(synthetic_root: Path, tmp_path: Path) -> None:
    common = tiny_overrides(synthetic_root, tmp_path) + ["trainer.checkpoint_every=1", "ttn.warmup_steps=0"]
    train_ttn(make_config("ttn", common + ["trainer.max_steps=2"]))
    with pytest.raises(TrainingDiverged, match="1 rollbacks used"):
        train_ttn(make_config("ttn", common + EXPLODING + ["trainer.max_steps=6", "resume=force",
                                                          "trainer.divergence.lr_factor=1.0",
                                                          "trainer.divergence.max_rollbacks=1"]))
    header = load_model_file(tmp_path / "ttn" / "ttn.safetensors", kind="ttn")[1]
    assert header["iterations"] == 2  # the healthy export of the first run is kept, not overwritten


def test_non_finite_weights_are_neither_written_nor_loaded(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="non-finite"):
        save_model(tmp_path / "m.safetensors", {"w": torch.tensor([1.0, float("nan")])}, "ttn", {})
    assert not (tmp_path / "m.safetensors").exists()
    save_file({"w": torch.tensor([float("inf")])}, str(tmp_path / "m.safetensors"),
              metadata={"dctnet": json.dumps({"format_version": "1", "kind": "ttn", "arch": {}})})
    with pytest.raises(CheckpointError, match="non-finite"):
        load_model_file(tmp_path / "m.safetensors")
