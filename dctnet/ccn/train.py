"""Stage 1 driver: runs the configured stages (pretrain, adapt, sample) in order under ``<run_dir>/ccn``."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only

from dctnet.ccn.module import CCNModule, build_generator
from dctnet.ccn.colour_match import colour_map_path, match_sample_colours
from dctnet.ccn.sampling import sample_calibrated
from dctnet.atomic import temporary_beside
from dctnet.ccn.source import load_source, source_discriminator
from dctnet.config import CCNStageConfig, IdentityConfig, SamplingConfig, StyleGANConfig, check_known_keys, typed
from dctnet.data.decode import list_images
from dctnet.models.face import build_identity_network
from dctnet.precision import resolve_precision
from dctnet.training import (check_optimiser, ensure_synthetic_data, fit_stage, gan_datamodule, iterations_for,
                             prepare_environment)

log = logging.getLogger(__name__)
STAGES = ("pretrain", "adapt", "sample")
# Stage-recipe keys added after G_src caches were first written that pretraining never reads (adaptation's
# losses): left out of the cache key, so a user's cached G_src (an hour of CPU at 64 px) stays valid.
KEYS_PRETRAINING_IGNORES = ("colour_layout_weight", "colour_layout_cells", "self_similarity_weight",
                            "self_similarity_cells", "patch_discriminator", "patch_image_weight")  # adapt-only


def train_stage(cfg: DictConfig, mode: str, source_state: dict | None, ccn_dir: Path) -> Path:
    """Fit one of pretrain/adapt; returns the path of its ``ccn.safetensors`` export."""
    stage_cfg: CCNStageConfig = typed(cfg.ccn[mode], CCNStageConfig)
    model: StyleGANConfig = typed(cfg.ccn.model, StyleGANConfig)
    stage_dir = ccn_dir / mode
    iterations = iterations_for(cfg, stage_cfg.steps)
    check_optimiser(f"ccn.{mode}", stage_cfg.batch_size, stage_cfg.optimizer)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)  # initial weights depend on the seed only
    module = CCNModule(model, stage_cfg, mode, str(stage_dir), int(cfg.trainer.sample_every),
                       identity=typed(cfg.identity, IdentityConfig), source_state=source_state,
                       preview=(int(cfg.trainer.preview_count), int(cfg.trainer.preview_seed)))
    folder = cfg.data.photos if mode == "pretrain" else cfg.data.cartoons
    seed = cfg.seed + (0 if mode == "pretrain" else 1)
    datamodule = gan_datamodule(cfg, {"image": folder}, stage_cfg.batch_size, seed, iterations, size=model.size,
                                gem=False)
    fit_stage(cfg, module, datamodule, stage_dir, iterations, free_keys=keys_stage_does_not_read(mode))
    return stage_dir / "ccn.safetensors"


def keys_stage_does_not_read(mode: str) -> tuple[str, ...]:
    """Config keys a CCN stage's resume may see changed: the later stages' and the baselines' sections (and, for
    pretraining, the adapt-only keys of its own), so tuning adaptation never blocks continuing a long pretraining."""
    later = ("ccn.sampling", "ttn", "cyclegan")
    if mode == "pretrain":
        return (*later, "ccn.adapt", *(f"ccn.pretrain.{key}" for key in KEYS_PRETRAINING_IGNORES))
    return later


def kept_samples_folder(cfg: DictConfig) -> Path:
    """Where this run's sample stage writes its kept calibrated samples (``all/`` and ``manifest.csv`` beside it):
    the TTN's cartoon domain, known before stage 1 runs."""
    return Path(cfg.run_dir) / "ccn" / "calibrated" / "kept"


def train_ccn(cfg: DictConfig) -> dict[str, Path]:
    """Run stage 1 as configured; returns the paths it produced (exports, calibrated folder)."""
    prepare_environment()
    check_known_keys(cfg)
    unknown = set(cfg.ccn.stages) - set(STAGES)
    if unknown:
        raise ValueError(f"ccn.stages has unknown entries {sorted(unknown)}; choose from {STAGES}")
    ensure_synthetic_data(cfg)
    model: StyleGANConfig = typed(cfg.ccn.model, StyleGANConfig)
    ccn_dir = Path(cfg.run_dir) / "ccn"
    outputs: dict[str, Path] = {}
    source_path = Path(cfg.ccn.source_checkpoint) if cfg.ccn.source_checkpoint else None
    if "pretrain" in cfg.ccn.stages:
        source_path = outputs["pretrain"] = pretrained_source(cfg, ccn_dir)
    if "adapt" in cfg.ccn.stages:
        if source_path is None:
            raise ValueError("the adapt stage needs G_src: set ccn.source_checkpoint=<rosinality .pt or "
                             "ccn.safetensors> or include 'pretrain' in ccn.stages")
        outputs["adapt"] = train_stage(cfg, "adapt", load_source(source_path, model), ccn_dir)
    if "sample" in cfg.ccn.stages and rank_zero_only.rank == 0:
        adapted = outputs.get("adapt", ccn_dir / "adapt" / "ccn.safetensors")
        if source_path is None:  # sampling alone (e.g. another blend): the G_src this run_dir's adaptation used
            source_path = source_generator_path(cfg)
        if not Path(adapted).is_file():
            raise ValueError(f"the sample stage needs an adapted generator at {adapted} (run adapt first)")
        outputs["calibrated"] = sample_stage(cfg, model, load_source(source_path, model), load_source(adapted, model),
                                             kept_samples_folder(cfg).parent)
    return outputs


def source_cache_key(cfg: DictConfig) -> str:
    """Hash of everything that determines a pretrained G_src: model, pretrain recipe, photos (names, sizes), seed."""
    photos = [(p.name, p.stat().st_size) for p in list_images(cfg.data.photos)]
    pretrain = OmegaConf.to_container(cfg.ccn.pretrain, resolve=True)
    for key in KEYS_PRETRAINING_IGNORES:
        pretrain.pop(key, None)
    facts = {"model": OmegaConf.to_container(cfg.ccn.model, resolve=True), "pretrain": pretrain,
             "max_steps": cfg.trainer.max_steps, "seed": cfg.seed, "max_images": cfg.data.loader.max_images, "photos": photos}
    precision = resolve_precision(str(cfg.trainer.precision), str(cfg.trainer.accelerator))
    if precision != "32-true":  # other numerics train another G_src (fp32 keys stay as they were)
        facts["precision"] = precision
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:16]


def cached_source_path(cfg: DictConfig) -> Path | None:
    """Where this config's pretrained G_src is (or would be) cached; None when ``ccn.source_cache`` is off."""
    if not cfg.ccn.source_cache:
        return None
    return Path(cfg.ccn.source_cache).expanduser() / f"g_src-{source_cache_key(cfg)}.safetensors"


def pretrained_source(cfg: DictConfig, ccn_dir: Path) -> Path:
    """G_src from ``ccn.source_cache`` when this exact pretraining was done before, else pretrain (and cache it)."""
    cached = cached_source_path(cfg)
    if cached is not None and cached.is_file():
        log.info("reusing the pretrained G_src %s (same model, recipe, photos and seed; ccn.source_cache=null "
                 "to pretrain again)", cached)
        return cached
    exported = train_stage(cfg, "pretrain", None, ccn_dir)
    if cached is not None and rank_zero_only.rank == 0:
        temporary = temporary_beside(cached, ".safetensors")
        shutil.copyfile(exported, temporary)
        os.replace(temporary, cached)
        log.info("pretrained G_src cached as %s", cached)
    return exported


def source_generator_path(cfg: DictConfig) -> Path:
    """The G_src that stage 1 used for this config: ``ccn.source_checkpoint``, else the cached or run-local export."""
    if cfg.ccn.source_checkpoint:
        return Path(cfg.ccn.source_checkpoint)
    candidates = [cached_source_path(cfg), Path(cfg.run_dir) / "ccn" / "pretrain" / "ccn.safetensors"]
    candidates = [candidate for candidate in candidates if candidate is not None]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no pretrained G_src for this config (looked for {[str(c) for c in candidates]}): run "
                            "train_ccn.py with the same run_dir and pretrain recipe, or set ccn.source_checkpoint")


def sample_stage(cfg: DictConfig, model: StyleGANConfig, source_state: dict, cartoon_state: dict, out_dir: Path) -> Path:
    source, cartoon = build_generator(model), build_generator(model)
    source.load_state_dict(source_state["g_ema"])
    cartoon.load_state_dict(cartoon_state["g_ema"])
    discriminator = None
    if "d" in cartoon_state:
        discriminator = source_discriminator(model, cartoon_state)
        discriminator.load_state_dict(cartoon_state["d"])
        discriminator.eval()
    identity = build_identity_network(typed(cfg.identity, IdentityConfig)) if cfg.identity.network != "none" else None
    device = torch.device("cuda" if torch.cuda.is_available() and cfg.trainer.accelerator in ("auto", "gpu", "cuda") else "cpu")
    records = sample_calibrated(source, cartoon, discriminator, identity, typed(cfg.ccn.sampling, SamplingConfig),
                                out_dir, device)
    kept = sum(r.kept for r in records)
    log.info("calibrated samples: %d written, %d kept -> %s", len(records), kept, out_dir / "kept")
    colour_map_path(out_dir / "kept").unlink(missing_ok=True)  # no earlier run's map beside unmatched samples
    if cfg.ccn.sampling.match_colours:
        match_sample_colours(out_dir / "kept", cfg.data.cartoons)
    return out_dir / "kept"
