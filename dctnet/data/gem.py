"""Geometry expansion module (GEM): non-trainable, seeded geometric augmentation of both domains.

An albumentations pipeline with the official DCT-Net ranges as defaults: horizontal flip; a scale
change (mostly shrink U(0.8, 1.0), sometimes zoom U(1.0, 1.1)) *or* a rotation (±10°), never both;
a small translation. Borders are reflected by default so that no black corners become a domain cue.
Every call is reproducible from a seed (per image, so independent of the number of workers).
"""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np

from dctnet.config import GemConfig

BORDERS = {"reflect": cv2.BORDER_REFLECT_101, "replicate": cv2.BORDER_REPLICATE, "constant": cv2.BORDER_CONSTANT}


def build_gem(cfg: GemConfig) -> A.Compose | None:
    """The GEM pipeline for ``cfg``, or ``None`` when disabled (ablation ``data/gem=none``)."""
    if not cfg.enabled:
        return None
    if cfg.border not in BORDERS:
        raise ValueError(f"data.gem.border must be one of {sorted(BORDERS)}, got {cfg.border!r}")
    if not 0 < cfg.shrink_min <= cfg.shrink_max <= 1.0 <= cfg.zoom_max:
        raise ValueError("data.gem needs 0 < shrink_min <= shrink_max <= 1 <= zoom_max")
    border = {"border_mode": BORDERS[cfg.border], "fill": cfg.fill}
    scale_choices = [
        A.Affine(scale=(cfg.shrink_min, cfg.shrink_max), p=max(cfg.scale_p * (1 - cfg.zoom_p), 1e-9), **border),
        A.Affine(scale=(1.0, cfg.zoom_max), p=max(cfg.scale_p * cfg.zoom_p, 1e-9), **border),
        A.Affine(rotate=(-cfg.rotate_limit, cfg.rotate_limit), p=max(cfg.rotate_p, 1e-9), **border),
    ]
    steps: list[A.BasicTransform] = [A.HorizontalFlip(p=cfg.flip_p)]
    total = cfg.scale_p + cfg.rotate_p
    if total > 0:
        steps.append(A.OneOf(scale_choices, p=min(1.0, total)))
    if cfg.translate > 0:
        shift = (-cfg.translate, cfg.translate)
        steps.append(A.Affine(translate_percent={"x": shift, "y": shift}, p=cfg.translate_p, **border))
    return A.Compose(steps, seed=0)


def apply_gem(pipeline: A.Compose | None, image: np.ndarray, seed: int) -> np.ndarray:
    """Apply ``pipeline`` to an HxWx3 uint8 image with randomness fixed by ``seed``."""
    if pipeline is None:
        return image
    pipeline.set_random_seed(seed)
    return pipeline(image=image)["image"]
