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



def test_a_crafted_inception_fid_file_is_refused_before_it_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """torch-fidelity loads with weights_only=False; dctnet forces the safe loader around it."""
    from dctnet.metrics.features import build_feature_extractor
    from dctnet.weights import REGISTRY

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "pwned"
    planted = REGISTRY["inception-fid"].path
    planted.parent.mkdir(parents=True)
    torch.save({"payload": Payload(marker)}, planted)
    with pytest.raises(Exception, match="(?i)weights.only|unsupported global|pickle"):
        build_feature_extractor("inception")
    assert not marker.exists()
