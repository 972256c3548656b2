"""VGG19 feature extractor for the content loss (torchvision architecture, weights from the registry)."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import vgg19

from dctnet.checkpoints import load_strict, load_torch_file
from dctnet.seeding import fixed_seed
from dctnet.weights import resolve

# index in torchvision's vgg19().features of each conv layer's output (before its ReLU)
VGG19_LAYERS = {"conv1_2": 2, "conv2_2": 7, "conv3_4": 16, "conv4_4": 25, "conv5_4": 34}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VGGFeatures(nn.Module):
    """Images in [-1, 1] -> VGG19 features at ``layer`` (ImageNet normalisation, as torchvision trained it)."""

    def __init__(self, layer: str = "conv4_4", pretrained: bool = True, weights: str | None = None) -> None:
        super().__init__()
        if layer not in VGG19_LAYERS:
            raise ValueError(f"unknown VGG19 layer {layer!r}; choose from {sorted(VGG19_LAYERS)}")
        # Missing weights fail here, before the 143 M-parameter network is built.
        path = resolve("vgg19", weights) if pretrained else None
        # Random weights are one fixed network (seed 0), as the identity and FID networks' are: drawn from the
        # training seed's RNG, each training seed had its own content loss, so two seeds compared two objectives.
        with fixed_seed(0):
            model = vgg19(weights=None)
        self.source = "random init, seed 0 (pretrained=false)"
        if path is not None:
            load_strict(model, load_torch_file(path), str(path))
            self.source = path.name
        self.features = model.features[: VGG19_LAYERS[layer] + 1].eval()
        for parameter in self.features.parameters():
            parameter.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def train(self, mode: bool = True) -> "VGGFeatures":
        super().train(mode)
        self.features.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(((images + 1) / 2 - self.mean) / self.std)
