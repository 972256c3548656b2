"""Loading a source generator G_src: a rosinality checkpoint (``.pt``) or a dctnet ``ccn.safetensors``."""

from __future__ import annotations

from pathlib import Path

import torch

from dctnet.checkpoints import CheckpointError, load_model_file, load_strict, load_torch_file
from dctnet.config import StyleGANConfig
from dctnet.models.stylegan2 import Discriminator


def split_prefixed(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def source_discriminator(model: StyleGANConfig, source: dict) -> Discriminator:
    """An untrained D of the kind ``source`` (a ``load_source`` result) holds: patch resolution and image weight."""
    from dctnet.ccn.module import build_discriminator

    return build_discriminator(model, source.get("patch_discriminator"), source.get("patch_image_weight", 0.0))


def load_source(path: str | Path, model: StyleGANConfig) -> dict[str, dict[str, torch.Tensor] | torch.Tensor]:
    """``{'g_ema': ..., 'd': ... (if present)}`` checked against ``model``; ``patch_discriminator``: the
    resolution at which an adapted D judged patches, and ``patch_image_weight`` its whole-image logit's weight
    (dctnet exports that had one).

    rosinality files hold ``g``, ``d``, ``g_ema`` (training checkpoints) or only ``g_ema`` and
    ``latent_avg`` (converted NVIDIA weights); both load strictly into our modules. ``latent_avg`` is not
    read: sampling and projection compute the mean latent of the generator they use (``ccn.sampling.mean_latents``).
    """
    from dctnet.ccn.module import build_generator

    path = Path(path)
    if path.suffix == ".safetensors":
        state, header = load_model_file(path, kind="stylegan2")
        arch = header["arch"]
        expected = {k: getattr(model, k) for k in arch if hasattr(model, k)}
        if arch != {**arch, **expected}:
            raise CheckpointError(f"{path} was trained with {arch}, the config asks for {expected}: "
                                  "set ccn/model to match the checkpoint")
        source = {"g_ema": split_prefixed(state, "g_ema."), "d": split_prefixed(state, "d.")}
        patch_resolution = header.get("patch_discriminator")  # an adapted D that judged patches
        image_weight = float(header.get("patch_image_weight", 0.0))
    else:
        raw = load_torch_file(path)
        if not isinstance(raw, dict) or "g_ema" not in raw:
            raise CheckpointError(f"{path}: not a rosinality StyleGAN2 checkpoint (no 'g_ema' entry)")
        source, patch_resolution, image_weight = {"g_ema": raw["g_ema"]}, None, 0.0
        if "d" in raw:
            source["d"] = raw["d"]
    load_strict(build_generator(model), source["g_ema"], f"{path} (g_ema)")
    if source.get("d"):
        if patch_resolution:
            source["patch_discriminator"] = patch_resolution
            source["patch_image_weight"] = image_weight
        load_strict(source_discriminator(model, source), source["d"], f"{path} (d)")
    else:
        source.pop("d", None)
    return source
