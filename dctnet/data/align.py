"""Face detection and 5-point similarity alignment (training crops and inference head mode).

MTCNN (facenet-pytorch; its weights ship inside the package, so this works offline) finds faces and
five landmarks (eyes, nose, mouth corners). A similarity transform (rotation, uniform scale,
translation; OpenCV's robust estimator) maps them onto the ArcFace template, scaled by ``scale`` around
the crop centre so hair and chin stay in the crop (0.75 as the official inference). The inverse
transform is kept, so a stylized crop can be pasted back onto the original image.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from dctnet.atomic import csv_text, write_text_atomic
from dctnet.data.decode import ImageDecodeError, list_images, read_image, unique_stems, write_image

log = logging.getLogger(__name__)

# ArcFace 112x112 reference landmarks: left eye, right eye, nose tip, left and right mouth corners
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]], np.float32) / 112.0


def template_points(size: int, scale: float = 0.75) -> np.ndarray:
    """Target landmark positions in a ``size`` px crop: the template shrunk by ``scale`` about the centre."""
    return ((ARCFACE_TEMPLATE - 0.5) * scale + 0.5) * size


@dataclass
class AlignedFace:
    crop: np.ndarray  # size x size x 3 uint8
    box: np.ndarray  # x0, y0, x1, y1 in the original image
    probability: float
    landmarks: np.ndarray  # 5 x 2 in the original image
    matrix: np.ndarray  # 2 x 3: original -> crop
    inverse: np.ndarray  # 2 x 3: crop -> original


class FaceAligner:
    """Detect every face of an RGB uint8 image and return aligned crops with their transforms."""

    def __init__(self, size: int = 256, scale: float = 0.75, min_probability: float = 0.9,
                 device: str = "cpu") -> None:
        from facenet_pytorch import MTCNN

        self.size, self.scale, self.min_probability = size, scale, min_probability
        self.detector = MTCNN(keep_all=True, device=torch.device(device))
        self.target = template_points(size, scale)

    def detect(self, image: np.ndarray) -> list[tuple[np.ndarray, float, np.ndarray]]:
        boxes, probabilities, landmarks = self.detector.detect(image, landmarks=True)
        if boxes is None:
            return []
        found = [(np.asarray(b, np.float32), float(p), np.asarray(lm, np.float32))
                 for b, p, lm in zip(boxes, probabilities, landmarks) if p is not None and p >= self.min_probability]
        return sorted(found, key=lambda f: (f[0][0], f[0][1]))  # left to right: stable crop names

    def align(self, image: np.ndarray) -> list[AlignedFace]:
        faces = []
        for box, probability, landmarks in self.detect(image):
            matrix, _ = cv2.estimateAffinePartial2D(landmarks.astype(np.float32), self.target, method=cv2.LMEDS)
            if matrix is None:
                continue
            crop = cv2.warpAffine(image, matrix, (self.size, self.size), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REFLECT_101)
            faces.append(AlignedFace(crop, np.asarray(box), probability, np.asarray(landmarks), matrix,
                                     cv2.invertAffineTransform(matrix)))
        return faces


def align_folder(source: str | Path, target: str | Path, size: int = 256, scale: float = 0.75) -> dict[str, list]:
    """Write ``<stem>_<k>.png`` per face and ``alignment.csv``; images without faces are listed, not fatal."""
    source, target = Path(source), Path(target)
    files = [source] if source.is_file() else list_images(source)
    aligner = FaceAligner(size, scale)
    stems = unique_stems(files)
    rows, no_face, unreadable = [], [], []
    for path in files:
        try:
            image = read_image(path)
        except ImageDecodeError as error:
            unreadable.append(str(error))
            log.warning("skipping %s", error)
            continue
        faces = aligner.align(image)
        if not faces:
            no_face.append(str(path))
            log.warning("no face found in %s", path)
        for k, face in enumerate(faces):
            name = f"{stems[path]}_{k}.png"
            write_image(target / name, face.crop)
            rows.append([name, path.name, k, f"{face.probability:.4f}", *np.round(face.box, 2),
                         *np.round(face.landmarks.flatten(), 2), *np.round(face.inverse.flatten(), 6)])
    target.mkdir(parents=True, exist_ok=True)
    header = ["crop", "source", "face", "probability", "x0", "y0", "x1", "y1",
              *[f"{p}_{axis}" for p in ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right") for axis in "xy"],
              *[f"inverse_{i}" for i in range(6)]]
    write_text_atomic(target / "alignment.csv", csv_text(header, rows))
    write_text_atomic(target / "no_face.txt", "".join(f"{p}\n" for p in no_face))
    return {"crops": [r[0] for r in rows], "no_face": no_face, "unreadable": unreadable}
