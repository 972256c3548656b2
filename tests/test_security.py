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


def _plant(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {}, "payload": Payload(marker)}, path)
    return path


def _stylize(path: Path) -> None:
    from dctnet.inference.stylize import load_stylizer

    load_stylizer(path, backend="torch", device="cpu")


def _export(path: Path) -> None:
    from dctnet.inference.export import export_model

    export_model(path, "onnx")


def _baseline(path: Path) -> None:
    from dctnet.baselines.train import load_baseline

    load_baseline(path)


def _init_from(path: Path) -> None:
    from dctnet.ttn.module import TTNModule
    from dctnet.ttn.train import initialise_from
    from dctnet.config import TTNConfig, TTNLossConfig, config_node

    loss = config_node("ttn.loss", TTNLossConfig, vgg_pretrained=False)
    module = TTNModule(config_node("ttn", TTNConfig, loss=loss, batch_size=2), "unused", 0, attribute_count=2)
    initialise_from(module, path)


def _source_checkpoint(path: Path) -> None:
    from dctnet.ccn.source import load_source
    from dctnet.config import StyleGANConfig, config_node

    load_source(path, config_node("ccn.model", StyleGANConfig, size=16, style_dim=32, n_mlp=2, channel_max=16))


def _vgg(path: Path) -> None:
    from dctnet.models.vgg import VGGFeatures

    VGGFeatures("conv2_2", pretrained=True, weights=str(path))


def _facenet(path: Path) -> None:
    from dctnet.config import IdentityConfig, config_node
    from dctnet.models.face import build_identity_network

    build_identity_network(config_node("identity", IdentityConfig, pretrained=True, weights=str(path)))


def _lpips(path: Path) -> None:
    from dctnet.metrics.run import build_lpips

    build_lpips(pretrained=True)


def _lpips_reading(planted: Path):
    """An LPIPS constructor that reads ``planted`` the way lpips reads its linear layers (a bare torch.load)."""
    def init(self, *args, **kwargs) -> None:
        torch.nn.Module.__init__(self)
        torch.load(planted, map_location="cpu")
    return init


LOADERS = {  # name -> (file name the loader is given, the loader)
    "dctnet stylize (ttn.safetensors)": ("ttn.safetensors", _stylize),
    "dctnet export": ("ttn.safetensors", _export),
    "baseline model files": ("cyclegan.safetensors", _baseline),
    "ttn.init_from": ("ttn.safetensors", _init_from),
    "ccn.source_checkpoint (rosinality .pt)": ("stylegan2.pt", _source_checkpoint),
    "ccn.source_checkpoint (safetensors)": ("ccn.safetensors", _source_checkpoint),
    "VGG19 (content loss)": ("vgg19.pth", _vgg),
    "FaceNet (identity loss and metric)": ("facenet.pt", _facenet),
    "LPIPS AlexNet backbone (registry)": (None, _lpips),
    "LPIPS linear layers (lpips package file)": ("lin.pth", None),
}


@pytest.mark.parametrize("loader", list(LOADERS))
def test_every_weight_loader_refuses_a_crafted_pickle(loader: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from dctnet.weights import REGISTRY

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("DCTNET_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "pwned"
    name, load = LOADERS[loader]
    if load is None:  # the package's own file: plant a pickle where lpips looks for it
        import lpips

        planted = _plant(tmp_path / name, marker)
        monkeypatch.setattr(lpips.LPIPS, "__init__", _lpips_reading(planted))
        path, load = planted, _lpips
    else:
        path = _plant(tmp_path / name if name else REGISTRY["alexnet-lpips"].path, marker)
    with pytest.raises(Exception, match="(?i)weights.only|unsupported global|pickle|refused|safetensors"):
        load(path)
    assert not marker.exists()
