"""Feature extractors for FID/KID, identity and perceptual metrics, each naming what it is.

- ``inception``: torch-fidelity's InceptionV3 (the standard FID network), weights from the registry
  (``dctnet weights``; never downloaded implicitly);
- ``random``: a fixed-seed random ResNet-18, allowed only for offline tests and the demo; reports
  that use it say so in their header because its numbers are not comparable to published FIDs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
import torchvision

from dctnet.seeding import fixed_seed
from dctnet.weights import resolve


@dataclass
class FeatureExtractor:
    name: str
    network: torch.nn.Module
    input_kind: str  # "uint8" (Inception takes 0..255) or "unit" (0..1, ImageNet-normalised here)

    @torch.inference_mode()
    def __call__(self, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """N x H x W x 3 uint8 -> N x D float features."""
        outputs = []
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size])).permute(0, 3, 1, 2)
            if self.input_kind == "uint8":
                features = self.network(x)
                features = features[0] if isinstance(features, tuple) else features
            else:
                x = F.interpolate(x.float() / 255, size=(128, 128), mode="bilinear", align_corners=False)
                mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
                std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
                features = self.network((x - mean) / std)
            outputs.append(features.reshape(len(x), -1).double().numpy())
        return np.concatenate(outputs)


@contextmanager
def weights_only_torch_load() -> Iterator[None]:
    """Within the block every ``torch.load`` runs with ``weights_only=True``, whatever the caller passes.

    torch-fidelity reads its Inception file with ``torch.load(weights_only=False)``: a crafted file at the
    registry path would run code. Its file is a plain state dict, so the safe loader reads it unchanged.
    """
    original = torch.load

    def safe_load(*args, **kwargs):
        kwargs["weights_only"] = True
        return original(*args, **kwargs)

    torch.load = safe_load
    try:
        yield
    finally:
        torch.load = original


def build_feature_extractor(kind: str) -> FeatureExtractor:
    if kind == "inception":
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        path = resolve("inception-fid")
        with weights_only_torch_load():
            network = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                                  feature_extractor_weights_path=str(path))
        return FeatureExtractor(f"InceptionV3 2048-d pool features ({path.name})", network.eval(), "uint8")
    if kind == "random":
        with fixed_seed(0):
            network = torchvision.models.resnet18(weights=None)
        network.fc = torch.nn.Identity()
        return FeatureExtractor("random-init ResNet-18 (pretrained=false: not comparable to published FID)",
                                network.eval(), "unit")
    raise ValueError(f"evaluate.feature_extractor must be 'inception' or 'random', got {kind!r}")
