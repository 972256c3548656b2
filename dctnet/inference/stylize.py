"""Applying a trained TTN to images and folders (full-frame mode); the export format is ttn.safetensors."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from dctnet.checkpoints import load_model_file
from dctnet.data.datamodule import to_tensor, to_uint8
from dctnet.data.decode import ImageDecodeError, list_images, read_image, write_image
from dctnet.models.unet import UNetGenerator, pad_to_multiple
from dctnet.ttn.module import refine_output

log = logging.getLogger(__name__)


@dataclass
class Stylizer:
    """A loaded TTN and how its outputs are post-filtered (as in training)."""

    network: UNetGenerator
    guided_filter: bool
    device: torch.device

    @torch.inference_mode()
    def __call__(self, image: np.ndarray) -> np.ndarray:
        """HxWx3 uint8 -> stylized HxWx3 uint8 of the same size."""
        x = to_tensor(image)[None].to(self.device)
        padded, (height, width) = pad_to_multiple(x, self.network.stride)
        out = refine_output(padded, self.network(padded), self.guided_filter)[:, :, :height, :width]
        return to_uint8(out)[0]


def load_stylizer(path: str | Path, device: str = "cpu") -> Stylizer:
    state, header = load_model_file(path, kind="ttn")
    arch = header["arch"]
    network = UNetGenerator(arch["base_channels"], arch["num_residual"], arch["num_downsamples"])
    network.load_state_dict(state)
    return Stylizer(network.eval().to(device), bool(arch.get("output_guided_filter", True)), torch.device(device))


@dataclass
class FolderReport:
    done: list[Path] = field(default_factory=list)
    skipped: dict[Path, str] = field(default_factory=dict)


def stylize_folder(stylize, source: str | Path, target: str | Path, overwrite: bool = False) -> FolderReport:
    """Apply ``stylize`` (uint8 -> uint8) to every image of ``source``; unreadable files are skipped with a reason."""
    report = FolderReport()
    for path in list_images(source):
        out = Path(target) / (path.stem + ".png")
        if out.exists() and not overwrite:
            report.skipped[path] = f"{out} exists (use overwrite)"
            continue
        try:
            write_image(out, stylize(read_image(path)))
        except ImageDecodeError as error:
            report.skipped[path] = str(error)
            log.warning("skipping %s", error)
            continue
        report.done.append(out)
    return report
