"""evaluate.py's engine: score every method's stylized folder against the sources and the cartoon domain.

Per method: FID and KID against the reference cartoons (KID is the meaningful one for ~100-image style
sets), identity similarity to the source photo, LPIPS to the source (content kept), and, when paired
targets exist (synthetic data), L1, SSIM and LPIPS to the target. Per-image metrics get a 95 %
bootstrap interval. Built-in baselines: ``identity`` (the input unchanged) and ``cartoon_filter``
(classical OpenCV bilateral filtering + edges). Writes metrics.json, metrics.csv, report.md and grid.png.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torchmetrics.functional.image import structural_similarity_index_measure

from dctnet.atomic import csv_text, write_text_atomic
from dctnet.data.decode import list_images, read_image, write_image
from dctnet.metrics.distances import bootstrap_interval, feature_statistics, frechet_distance, kernel_distance
from dctnet.metrics.features import FeatureExtractor

log = logging.getLogger(__name__)
BUILTIN_BASELINES = ("identity", "cartoon_filter")


def cartoon_filter(image: np.ndarray) -> np.ndarray:
    """Classical cartoon effect: repeated bilateral smoothing, colour quantisation, dark adaptive edges."""
    smooth = image
    for _ in range(3):
        smooth = cv2.bilateralFilter(smooth, d=5, sigmaColor=40, sigmaSpace=5)
    quantised = (smooth // 24) * 24 + 12
    grey = cv2.medianBlur(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), 3)
    block = max(3, (min(image.shape[:2]) // 16) | 1)
    edges = cv2.adaptiveThreshold(grey, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, block, 4)
    return np.where(edges[..., None] > 0, quantised, (quantised * 0.25).astype(np.uint8)).astype(np.uint8)


def load_matched(folder: str | Path, names: list[str], size: tuple[int, int]) -> np.ndarray:
    """Images of ``folder`` whose stems are ``names`` (in that order), resized to ``size`` (h, w)."""
    folder = Path(folder)
    files = {p.stem: p for p in list_images(folder)}
    missing = [n for n in names if n not in files]
    if missing:
        raise ValueError(f"{folder}: {len(missing)} of {len(names)} source images have no output "
                         f"(first: {missing[:3]}); folder holds {len(files)} images")
    images = [read_image(files[n]) for n in names]
    return np.stack([cv2.resize(im, (size[1], size[0]), interpolation=cv2.INTER_AREA) if im.shape[:2] != size
                     else im for im in images])


def load_folder(folder: str | Path, size: tuple[int, int] | None = None, limit: int | None = None) -> tuple[list[str], np.ndarray]:
    files = list_images(folder)[:limit]
    if not files:
        raise ValueError(f"{folder}: no images to evaluate")
    images = [read_image(p) for p in files]
    size = size or images[0].shape[:2]
    images = [cv2.resize(im, (size[1], size[0]), interpolation=cv2.INTER_AREA) if im.shape[:2] != size else im
              for im in images]
    return [p.stem for p in files], np.stack(images)


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1)


def summarise(values: np.ndarray, bootstrap: int) -> dict[str, float]:
    low, high = bootstrap_interval(values, bootstrap)
    finite = values[np.isfinite(values)]
    return {"mean": float(finite.mean()) if len(finite) else float("nan"), "ci_low": low, "ci_high": high,
            "count": int(len(finite))}


def aligned_faces(images: np.ndarray, matrices: list[np.ndarray | None], size: int) -> torch.Tensor:
    """Warp each image with its source's alignment matrix (skipping sources without a face)."""
    crops = [cv2.warpAffine(im, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
             for im, m in zip(images, matrices) if m is not None]
    return _to_tensor(np.stack(crops)) if crops else torch.zeros(0, 3, size, size)


def source_alignments(sources: np.ndarray, size: int) -> list[np.ndarray | None]:
    """MTCNN 5-point alignment matrix (to a ``size`` px crop: the identity network's input) of the most confident
    face of each source, or None when none is found."""
    from dctnet.data.align import FaceAligner

    aligner = FaceAligner(size=size, scale=1.0)
    matrices = []
    for image in sources:
        faces = aligner.align(image)
        matrices.append(max(faces, key=lambda f: f.probability).matrix if faces else None)
    return matrices


@torch.inference_mode()
def identity_embeddings(images: np.ndarray, identity: Any, alignments: list[np.ndarray | None] | None,
                        face_size: int, batch_size: int = 64) -> torch.Tensor:
    """Identity embeddings of ``images``: one per image, or, with ``alignments``, one per source with a face.

    evaluate.py embeds the sources once and compares every method's outputs to them, in batches of ``batch_size``:
    the identity network is the costliest metric. Measured on 1000 64 px pairs, three methods, 2 cores: scoring
    took 269 s when each method embedded the sources again in one 1000-image batch, 140 s this way."""
    if alignments is not None and not any(m is not None for m in alignments):
        return torch.zeros(0, 0)
    embed = identity if alignments is None else identity.embed_aligned
    faces = _to_tensor(images) if alignments is None else aligned_faces(images, alignments, face_size)
    return torch.cat([embed(faces[start:start + batch_size]) for start in range(0, len(faces), batch_size)])


def identity_similarities(outputs: np.ndarray, source_embeddings: torch.Tensor, identity: Any,
                          alignments: list[np.ndarray | None] | None, face_size: int) -> np.ndarray:
    """Per-pair cosine similarity to the sources' ``identity_embeddings``; NaN where the source has no detected
    face (counted by the caller)."""
    similarities = np.full(len(outputs), np.nan)
    found = list(range(len(outputs))) if alignments is None else [k for k, m in enumerate(alignments) if m is not None]
    if found:
        embeddings = identity_embeddings(outputs, identity, alignments, face_size)
        similarities[found] = torch.nn.functional.cosine_similarity(embeddings, source_embeddings, dim=1).numpy()
    return similarities


@torch.inference_mode()
def score_method(outputs: np.ndarray, sources: np.ndarray, reference_features: np.ndarray,
                 targets: np.ndarray | None, features: FeatureExtractor, identity: Any, perceptual: Any,
                 bootstrap: int, alignments: list[np.ndarray | None] | None = None, face_size: int = 0,
                 source_embeddings: torch.Tensor | None = None) -> dict[str, Any]:
    """All metrics of one method (outputs aligned with sources and, if given, targets).

    ``source_embeddings``: the sources' ``identity_embeddings`` (needed with ``identity``; run_evaluation computes them
    once for every method). Besides each metric's summary, ``result["per_image"]`` holds the per-image values
    (``write_report`` puts them in per_image.csv)."""
    result: dict[str, Any] = {}
    per_image: dict[str, np.ndarray] = {}

    def keep(name: str, values: np.ndarray) -> dict[str, float]:
        per_image[name] = values
        return summarise(values, bootstrap)

    out_features = features(outputs)
    mu, sigma = feature_statistics(out_features)
    ref_mu, ref_sigma = feature_statistics(reference_features)
    result["fid"] = frechet_distance(mu, sigma, ref_mu, ref_sigma)
    kid_mean, kid_std = kernel_distance(out_features, reference_features, subsets=50,
                                        subset_size=min(len(out_features), len(reference_features)))
    result["kid"], result["kid_std"] = kid_mean, kid_std
    out_t, src_t = _to_tensor(outputs), _to_tensor(sources)
    if identity is not None:
        sims = identity_similarities(outputs, source_embeddings, identity, alignments, face_size)
        result["identity"] = keep("identity", sims)
        result["identity"]["faces_not_found"] = int(np.isnan(sims).sum())
    if perceptual is not None:
        result["lpips_source"] = keep("lpips_source", perceptual(out_t, src_t).flatten().numpy())
    if targets is not None:
        tgt_t = _to_tensor(targets)
        result["paired_l1"] = keep("paired_l1", (out_t - tgt_t).abs().mean((1, 2, 3)).numpy() / 2)
        ssim = structural_similarity_index_measure((out_t + 1) / 2, (tgt_t + 1) / 2, data_range=1.0,
                                                   reduction="none").numpy()
        result["paired_ssim"] = keep("paired_ssim", ssim)
        if perceptual is not None:
            result["paired_lpips"] = keep("paired_lpips", perceptual(out_t, tgt_t).flatten().numpy())
    result["per_image"] = per_image
    return result


def _cell(value: Any, digits: int = 4) -> str:
    if isinstance(value, dict):
        return f"{value['mean']:.{digits}f} [{value['ci_low']:.{digits}f}, {value['ci_high']:.{digits}f}]"
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.{digits}f}"
    return "—"


COLUMNS = [("fid", "FID ↓"), ("kid", "KID ↓"), ("identity", "identity ↑"), ("lpips_source", "LPIPS to source ↓"),
           ("paired_l1", "paired L1 ↓"), ("paired_ssim", "paired SSIM ↑"), ("paired_lpips", "paired LPIPS ↓")]


def per_image_table(results: dict[str, dict[str, Any]], names: list[str]) -> str:
    """per_image.csv: one row per (method, image) with each per-image metric, for paired comparisons of methods."""
    metrics = sorted({k for m in results.values() for k in m.get("per_image", {})})
    rows = [[method, name, *[m["per_image"][k][i] if k in m.get("per_image", {}) else "" for k in metrics]]
            for method, m in results.items() for i, name in enumerate(names)]
    return csv_text(["method", "image", *metrics], rows)


def read_per_image(out_dir: Path) -> dict[str, dict[str, np.ndarray]]:
    """``{method: {metric: values in image order}}`` from an evaluation's per_image.csv."""
    values: dict[str, dict[str, list[float]]] = {}
    with open(Path(out_dir) / "per_image.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            method = values.setdefault(row.pop("method"), {})
            row.pop("image")
            for metric, value in row.items():
                method.setdefault(metric, []).append(float(value) if value != "" else float("nan"))
    return {m: {k: np.asarray(v) for k, v in metrics.items()} for m, metrics in values.items()}


def paired_difference(values: dict[str, dict[str, np.ndarray]], method: str, other: str, metric: str,
                      bootstrap: int = 1000) -> dict[str, float]:
    """Mean per-image ``method - other`` of ``metric`` on the same images, with a 95 % bootstrap interval.

    Two methods scored on the same test images share each image's difficulty, which cancels in their paired
    difference: whether its interval excludes 0 is the test of a small gain."""
    return summarise(values[method][metric] - values[other][metric], bootstrap)


def write_report(results: dict[str, dict[str, Any]], header: dict[str, str], out_dir: Path,
                 grid_rows: dict[str, np.ndarray], sources: np.ndarray, names: list[str]) -> Path:
    """metrics.json, metrics.csv, per_image.csv (rows named by ``names``, the sources' stems), grid.png and report.md
    in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "per_image.csv", per_image_table(results, names))
    results = {method: {k: v for k, v in m.items() if k != "per_image"} for method, m in results.items()}
    write_text_atomic(out_dir / "metrics.json", json.dumps({"header": header, "methods": results}, indent=2) + "\n")
    table = [[method, *[metrics[k]["mean"] if isinstance(metrics.get(k), dict) else metrics.get(k, "")
                        for k, _ in COLUMNS]] for method, metrics in results.items()]
    write_text_atomic(out_dir / "metrics.csv", csv_text(["method", *[key for key, _ in COLUMNS]], table))
    shown = min(8, len(sources))
    rows = [np.concatenate(list(sources[:shown]), 1)] + [np.concatenate(list(v[:shown]), 1) for v in grid_rows.values()]
    write_image(out_dir / "grid.png", np.concatenate(rows, 0))
    present = [(k, title) for k, title in COLUMNS if any(k in m for m in results.values())]
    lines = ["# dctnet evaluation report", ""]
    lines += [f"- **{k}**: {v}" for k, v in header.items()]
    lines += ["", "Mean per method, with a 95 % bootstrap interval for per-image metrics.", "",
              "| method | " + " | ".join(t for _, t in present) + " |", "|---" * (len(present) + 1) + "|"]
    for method, metrics in results.items():
        lines.append(f"| {method} | " + " | ".join(_cell(metrics.get(k)) for k, _ in present) + " |")
    lines += ["", "Per-image values (for paired comparisons of two methods on the same images): `per_image.csv`."]
    lines += ["", "Rows of `grid.png`: source photos, then " + ", ".join(grid_rows) + ".", "", "![grid](grid.png)", ""]
    path = out_dir / "report.md"
    return write_text_atomic(path, "\n".join(lines))
