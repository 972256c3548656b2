"""No code from checkpoint or weight files: crafted pickles are refused and never run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import make_config, tiny_overrides

from dctnet.ttn.train import train_ttn


class Payload:
    """Unpickling this creates ``marker``: the proof that a loader ran code from a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_planted_resume_checkpoint_cannot_run_code(synthetic_root: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "pwned"
    planted = tmp_path / "ttn" / "checkpoints" / "last.ckpt"
    planted.parent.mkdir(parents=True)
    torch.save({"state_dict": {}, "payload": Payload(marker)}, planted)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # the environment asks for unsafe loading
    with pytest.raises(Exception, match="(?i)weights.only|unsupported global|pickle"):
        train_ttn(make_config("ttn", tiny_overrides(synthetic_root, tmp_path) + ["trainer.max_steps=2"]))
    assert not marker.exists()
