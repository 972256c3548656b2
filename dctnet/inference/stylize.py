"""Applying a trained TTN (ttn.safetensors) to images, folders and videos: full frame, aligned heads, or both."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
import torch

from dctnet.data.decode import (ImageDecodeError, ensure_writable_folder, list_images, read_image, to_tensor,
                                 to_uint8, unique_stems, unusable_entries, write_image)
from dctnet.inference.backends import Backend, load_backend
from dctnet.inference.tiling import tiled_apply
from dctnet.models.unet import pad_to_multiple

log = logging.getLogger(__name__)
T = TypeVar("T")


def _batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of ``size`` items (the last may be shorter); works on streams such as video frames."""
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class Stylizer:
    """uint8 images in, stylized uint8 images of the same size out, through any backend.

    Images larger than ``tile`` on a side are processed in overlapping tiles (memory bounded by the tile);
    same-sized images given together (folders, video frames) run ``batch_size`` at a time.
    """

    def __init__(self, backend: Backend, tile: int = 1024, overlap: int = 64, batch_size: int = 4) -> None:
        stride = backend.stride
        self.backend = backend
        self.tile = max(stride, tile // stride * stride)
        self.overlap = -(-overlap // stride) * stride  # tile offsets stay on the network's stride grid
        self.batch_size = max(1, batch_size)

    @property
    def stride(self) -> int:
        return self.backend.stride

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """HxWx3 uint8 -> stylized HxWx3 uint8 of the same size."""
        return self.batch([image])[0]

    def batch(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Stylize several images; those of one size share forward passes."""
        results: list[np.ndarray | None] = [None] * len(images)
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for index, image in enumerate(images):
            by_shape.setdefault(image.shape, []).append(index)
        for indices in by_shape.values():
            for chunk in _batches(indices, self.batch_size):
                x, (height, width) = pad_to_multiple(torch.stack([to_tensor(images[k]) for k in chunk]), self.stride)
                if max(height, width) > self.tile:
                    out = torch.cat([tiled_apply(self.backend, x[i:i + 1], self.tile, self.overlap, self.batch_size,
                                                 self.stride)
                                     for i in range(len(chunk))])
                else:
                    out = self.backend(x)
                for k, array in zip(chunk, to_uint8(out[:, :, :height, :width])):
                    results[k] = array
        return results  # type: ignore[return-value]


def load_stylizer(path: str | Path, device: str = "auto", backend: str = "auto", half: bool = False,
                  tile: int = 1024, overlap: int = 64, batch_size: int = 4, precision: str = "fp32") -> Stylizer:
    """A :class:`Stylizer` for ``ttn.safetensors`` on the chosen backend, device and numerics."""
    return Stylizer(load_backend(path, backend, device, half, precision), tile, overlap, batch_size)


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

    @property
    def batch_size(self) -> int:
        return self.body.batch_size

    def batch(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Full frames share batched forward passes; faces are then pasted one image at a time."""
        frames = self.body.batch(images) if self.mode in ("full", "auto") else [image.copy() for image in images]
        return [self._paste_heads(image, frame) for image, frame in zip(images, frames)]

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return self.batch([image])[0]

    def _paste_heads(self, image: np.ndarray, result: np.ndarray) -> np.ndarray:
        if self.aligner is None:
            return result
        height, width = image.shape[:2]
        canvas = result.astype(np.float32)
        faces = self.aligner.align(image)
        if not faces and self.mode == "head":
            log.warning("--mode head: no face found in a %dx%d image; it is written unchanged", width, height)
        for face in faces:
            self.faces_found += 1
            stylized = self.head(face.crop).astype(np.float32)
            back = cv2.warpAffine(stylized, face.inverse, (width, height), flags=cv2.INTER_LINEAR)
            alpha = cv2.warpAffine(self.mask, face.inverse, (width, height), flags=cv2.INTER_LINEAR)[..., None]
            canvas = alpha * back + (1 - alpha) * canvas
        return np.clip(canvas + 0.5, 0, 255).astype(np.uint8)


def _frames(capture: cv2.VideoCapture):
    while True:
        ok, frame = capture.read()
        if not ok:
            return
        yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def stylize_video(stylize, source: str | Path, target: str | Path, progress: bool = False) -> tuple[int, bool]:
    """Frame-by-frame stylization (frames batched). Returns (frames, audio kept).

    Frames are encoded with OpenCV into a temporary file; when PyAV is installed (the ``[video]`` extra)
    and the source has an audio track, that track is copied (not re-encoded) into the result. The result
    appears under ``target`` only when complete.
    """
    from tqdm import tqdm

    from dctnet.atomic import temporary_beside

    capture = cv2.VideoCapture(str(source))
    if not capture.isOpened():
        raise ImageDecodeError(f"{source}: cannot open video")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    expected = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    target = Path(target)
    temporary = temporary_beside(target, suffix=target.suffix)
    writer, frames = None, 0
    try:
        with tqdm(total=expected, unit="frame", disable=not progress) as bar:
            for chunk in _batches(_frames(capture), getattr(stylize, "batch_size", 1)):
                outputs = stylize.batch(chunk) if hasattr(stylize, "batch") else [stylize(f) for f in chunk]
                for out in outputs:
                    if writer is None:
                        fourcc = cv2.VideoWriter_fourcc(*("mp4v" if target.suffix.lower() in (".mp4", ".mov") else "MJPG"))
                        writer = cv2.VideoWriter(temporary, fourcc, fps, (out.shape[1], out.shape[0]))
                    writer.write(cv2.cvtColor(out, cv2.COLOR_RGB2BGR))
                frames += len(outputs)
                bar.update(len(outputs))
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    finally:
        capture.release()
        if writer is not None:
            writer.release()
    if frames == 0:
        Path(temporary).unlink(missing_ok=True)
        raise ImageDecodeError(f"{source}: no decodable frames")
    if expected and frames < expected:
        log.warning("%s: its header announces %d frames but only %d could be decoded (truncated or damaged); "
                    "the result has %d frames", source, expected, frames, frames)
    try:
        audio = _copy_audio(Path(source), Path(temporary), target)
    finally:
        Path(temporary).unlink(missing_ok=True)
    return frames, audio


def _copy_audio(source: Path, silent: Path, target: Path) -> bool:
    """Remux ``silent``'s video with ``source``'s audio into ``target`` (atomically). False when no audio is kept."""
    from dctnet.atomic import temporary_beside

    try:
        import av
    except ImportError:
        log.info("PyAV not installed (pip install -e .[video]): %s is written without audio", target)
        silent.replace(target)
        return False
    with av.open(str(source)) as original:
        if not original.streams.audio:
            silent.replace(target)
            return False
        temporary = temporary_beside(target, suffix=target.suffix)
        try:
            with av.open(str(silent)) as video, av.open(temporary, "w", format=_container_format(target)) as output:
                streams = {video.streams.video[0]: output.add_stream_from_template(video.streams.video[0]),
                           original.streams.audio[0]: output.add_stream_from_template(original.streams.audio[0])}
                for container, stream in ((video, video.streams.video[0]), (original, original.streams.audio[0])):
                    for packet in container.demux(stream):
                        if packet.dts is None:  # the demuxer's flush packet
                            continue
                        packet.stream = streams[stream]
                        output.mux(packet)
            Path(temporary).replace(target)
            return True
        except Exception as error:  # an audio codec the container cannot hold: keep the video, say so
            Path(temporary).unlink(missing_ok=True)
            log.warning("could not copy the audio of %s (%s); writing the video without audio", source, error)
            silent.replace(target)
            return False


def _container_format(path: Path) -> str:
    return {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi"}.get(path.suffix.lower(), "mp4")


@dataclass
class FolderReport:
    done: list[Path] = field(default_factory=list)
    skipped: dict[Path, str] = field(default_factory=dict)


def stylize_folder(stylize, source: str | Path, target: str | Path, overwrite: bool = False,
                   progress: bool = False) -> FolderReport:
    """Apply ``stylize`` to every image of ``source`` (batched when it can); unreadable files are skipped with a
    reason, existing outputs are kept unless ``overwrite``, and each output is written atomically."""
    from tqdm import tqdm

    report = FolderReport()
    todo: list[tuple[Path, Path]] = []
    sources = list_images(source)
    report.skipped.update(unusable_entries(source))
    ensure_writable_folder(target)
    stems = unique_stems(sources)
    for path in sources:
        out = Path(target) / (stems[path] + ".png")
        if out.exists() and not overwrite:
            report.skipped[path] = f"{out} exists (use overwrite)"
        else:
            todo.append((path, out))
    with tqdm(total=len(todo), unit="image", disable=not progress) as bar:
        for chunk in _batches(todo, getattr(stylize, "batch_size", 1)):
            images, outs = [], []
            for path, out in chunk:
                try:
                    images.append(read_image(path))
                    outs.append(out)
                except ImageDecodeError as error:
                    report.skipped[path] = str(error)
                    log.warning("skipping %s", error)
            results = stylize.batch(images) if hasattr(stylize, "batch") else [stylize(i) for i in images]
            for out, result in zip(outs, results):
                write_image(out, result)
                report.done.append(out)
            bar.update(len(chunk))
    return report
