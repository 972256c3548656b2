"""The weights registry: missing files raise one error that says what and where; present files load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from facenet_pytorch import InceptionResnetV1

from dctnet.config import IdentityConfig, config_node
from dctnet.models.face import build_identity_network
from dctnet.models.vgg import VGGFeatures
from dctnet.weights import REGISTRY, MissingWeightsError, resolve, status_table


@pytest.fixture()
def empty_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("DCTNET_WEIGHTS", str(tmp_path / "dctnet"))
    return tmp_path


def test_missing_weights_say_which_file_and_where(empty_caches: Path) -> None:
    with pytest.raises(MissingWeightsError) as error:
        VGGFeatures(pretrained=True)
    message = str(error.value)
    assert "vgg19-dcbb9e9d.pth" in message and str(empty_caches / "torch" / "hub" / "checkpoints") in message
    with pytest.raises(MissingWeightsError, match="20180402-114759-vggface2.pt"):
        build_identity_network(config_node("identity", IdentityConfig, pretrained=True))
    assert status_table().count("MISSING") == len(REGISTRY)


def test_the_random_content_network_does_not_follow_the_training_seed() -> None:
    """pretrained=false gives one fixed network (seed 0) and leaves the caller's RNG where it was: a TTN's
    content loss must not change with its training seed."""
    torch.manual_seed(1)
    first = VGGFeatures("conv1_2", pretrained=False)
    after_first = torch.rand(3)
    torch.manual_seed(2)
    second = VGGFeatures("conv1_2", pretrained=False)
    assert torch.equal(first.features[0].weight, second.features[0].weight)
    torch.manual_seed(1)
    assert torch.equal(torch.rand(3), after_first)  # building it drew nothing from the caller's RNG
    assert "seed 0" in first.source


def test_weights_in_the_documented_place_are_loaded(empty_caches: Path) -> None:
    from torchvision.models import vgg19

    torch.manual_seed(123)  # not the random network's seed 0: only a real load gives these weights
    reference = vgg19(weights=None)
    path = REGISTRY["vgg19"].path
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    features = VGGFeatures("conv1_2", pretrained=True)
    assert torch.equal(features.features[0].weight, reference.features[0].weight)
    assert resolve("vgg19") == path and "present" in status_table()

    facenet = InceptionResnetV1(pretrained=None, classify=True, num_classes=10)
    face_path = REGISTRY["facenet-vggface2"].path
    face_path.parent.mkdir(parents=True)
    torch.save(facenet.state_dict(), face_path)
    network = build_identity_network(config_node("identity", IdentityConfig, pretrained=True, input_size=96))
    assert "vggface2" in network.name
    assert torch.equal(network.network.conv2d_1a.conv.weight, facenet.conv2d_1a.conv.weight)
    assert network(torch.zeros(2, 3, 32, 32)).shape == (2, 512)
