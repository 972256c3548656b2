"""Applying a trained TTN (ttn.safetensors) to images, folders and videos: full frame, aligned heads, or both."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import cv2
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


MODES = ("full", "head", "auto")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv")


def feather_mask(size: int, feather: float = 0.12) -> np.ndarray:
    """Square alpha mask for an aligned crop: 1 inside, a linear ramp over the outer ``feather`` of each side."""
    ramp = np.clip(np.minimum(np.arange(size), np.arange(size)[::-1]) / max(feather * size, 1.0), 0, 1)
    return np.minimum(ramp[:, None], ramp[None, :]).astype(np.float32)


class PortraitStylizer:
    """The official compound behaviour: the whole frame through the (body) TTN, then each aligned face
    through the head TTN and pasted back with a feathered mask through the alignment's inverse transform.

    ``mode``: ``full`` (frame only), ``head`` (faces only, the rest of the image unchanged), ``auto`` (both).
    """

    def __init__(self, body: Stylizer, head: Stylizer | None = None, mode: str = "auto", head_size: int = 288) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.body, self.head, self.mode = body, head or body, mode
        self.aligner = None
        if mode != "full":
            from dctnet.data.align import FaceAligner

            self.aligner = FaceAligner(size=head_size, scale=0.75)
        self.mask = feather_mask(head_size)
        self.faces_found = 0

    def __call__(self, image: np.ndarray) -> np.ndarray:
        result = self.body(image) if self.mode in ("full", "auto") else image.copy()
        if self.aligner is None:
            return result
        height, width = image.shape[:2]
        canvas = result.astype(np.float32)
        for face in self.aligner.align(image):
            self.faces_found += 1
            stylized = self.head(face.crop).astype(np.float32)
            back = cv2.warpAffine(stylized, face.inverse, (width, height), flags=cv2.INTER_LINEAR)
            alpha = cv2.warpAffine(self.mask, face.inverse, (width, height), flags=cv2.INTER_LINEAR)[..., None]
            canvas = alpha * back + (1 - alpha) * canvas
        return np.clip(canvas + 0.5, 0, 255).astype(np.uint8)


def stylize_video(stylize, source: str | Path, target: str | Path) -> int:
    """Frame-by-frame stylization with OpenCV; written to a temporary file, then renamed. Returns frames.

    OpenCV writes no audio track: the output is silent (documented; mux the audio back with ffmpeg if needed).
    """
    from dctnet.atomic import temporary_beside

    capture = cv2.VideoCapture(str(source))
    if not capture.isOpened():
        raise ImageDecodeError(f"{source}: cannot open video")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    target = Path(target)
    temporary = temporary_beside(target, suffix=target.suffix)
    writer, frames = None, 0
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            out = cv2.cvtColor(stylize(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)), cv2.COLOR_RGB2BGR)
            if writer is None:
                fourcc = cv2.VideoWriter_fourcc(*("mp4v" if target.suffix.lower() in (".mp4", ".mov") else "MJPG"))
                writer = cv2.VideoWriter(temporary, fourcc, fps, (out.shape[1], out.shape[0]))
            writer.write(out)
            frames += 1
    finally:
        capture.release()
        if writer is not None:
            writer.release()
    if frames == 0:
        Path(temporary).unlink(missing_ok=True)
        raise ImageDecodeError(f"{source}: no decodable frames")
    Path(temporary).replace(target)
    return frames


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
