"""Baseline driver: trains (CycleGAN) or builds (Toonify) a baseline under ``<run_dir>/baselines/<name>`` and
stylizes the test photos into ``<run_dir>/stylized/<name>``, where evaluate.py finds them."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
from omegaconf import DictConfig

from dctnet.baselines.cyclegan import CycleGANModule
from dctnet.baselines.toonify import export_toonify, load_toonify
from dctnet.checkpoints import load_model_file
from dctnet.config import CycleGANConfig, StyleGANConfig, ToonifyConfig, check_known_keys, typed
from dctnet.inference.stylize import Stylizer, stylize_folder
from dctnet.metrics.provenance import write_provenance
from dctnet.training import (check_optimiser, ensure_synthetic_data, fit_stage, gan_datamodule, iterations_for,
                             prepare_environment, preview_photos)

log = logging.getLogger(__name__)
BASELINES = ("cyclegan", "toonify")
MODEL_FILES = {"cyclegan": "cyclegan.safetensors", "toonify": "toonify.safetensors"}
READS_STAGE_1 = ("toonify",)  # built from stage 1's G_src and adapted G: trains after stage 1


def baseline_dir(cfg: DictConfig, name: str) -> Path:
    return Path(cfg.run_dir) / "baselines" / name


def train_cyclegan(cfg: DictConfig) -> Path:
    """Unpaired photos <-> exemplars on the TTN's data module and GEM; returns ``cyclegan.safetensors``."""
    recipe: CycleGANConfig = typed(cfg.cyclegan, CycleGANConfig)
    stage_dir = baseline_dir(cfg, "cyclegan")
    iterations = iterations_for(cfg, recipe.steps)
    check_optimiser("cyclegan", recipe.batch_size, recipe.optimizer)
    datamodule = gan_datamodule(cfg, {"photo": str(cfg.data.photos), "cartoon": str(cfg.data.cartoons)},
                                recipe.batch_size, cfg.seed, iterations)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)  # initial weights depend on the seed only
    module = CycleGANModule(recipe, cfg.data.size, iterations, str(stage_dir), int(cfg.trainer.sample_every),
                            sample_photos=preview_photos(cfg))
    fit_stage(cfg, module, datamodule, stage_dir, iterations)
    return stage_dir / MODEL_FILES["cyclegan"]


def build_toonify(cfg: DictConfig) -> Path:
    """G_src (stage 1's) and the adapted G_cartoon, blended as calibrated sampling blends them, in one file."""
    from dctnet.ccn.module import build_generator
    from dctnet.ccn.source import load_source
    from dctnet.ccn.train import source_generator_path

    model: StyleGANConfig = typed(cfg.ccn.model, StyleGANConfig)
    adapted = Path(cfg.run_dir) / "ccn" / "adapt" / "ccn.safetensors"
    if not adapted.is_file():
        raise FileNotFoundError(f"the Toonify baseline needs stage 1's adapted generator {adapted}: run train_ccn.py "
                                "with the same run_dir first")
    source, cartoon = build_generator(model), build_generator(model)
    source.load_state_dict(load_source(source_generator_path(cfg), model)["g_ema"])
    cartoon.load_state_dict(load_source(adapted, model)["g_ema"])
    sampling = cfg.ccn.sampling
    return export_toonify(baseline_dir(cfg, "toonify") / MODEL_FILES["toonify"], source, cartoon, model,
                          int(sampling.blend_resolution), float(sampling.blend_width),
                          typed(cfg.toonify, ToonifyConfig), extra={"g_cartoon": str(adapted)})


def load_baseline(path: str | Path, device: str = "cpu", batch_size: int | None = None) -> Stylizer:
    """A :class:`Stylizer` for a baseline's model file (its header says which baseline)."""
    from dctnet.baselines.cyclegan import KIND as CYCLEGAN
    from dctnet.baselines.cyclegan_backend import load_cyclegan

    _, header = load_model_file(path)
    if header["kind"] == CYCLEGAN:
        return Stylizer(load_cyclegan(path, device), batch_size=batch_size or 16)
    backend = load_toonify(path, device)
    return Stylizer(backend, batch_size=batch_size or backend.cfg.batch_size)


def trained_on(cfg: DictConfig) -> str:
    """How the baseline was made, for the report's provenance line."""
    if cfg.baseline == "cyclegan":
        gem = "GEM" if cfg.data.gem.enabled else "no GEM"
        return (f"photos <-> exemplars ({cfg.data.cartoons}), {gem}, batch {cfg.cyclegan.batch_size}, "
                f"{cfg.cyclegan.ngf}/{cfg.cyclegan.ndf} channels, {cfg.cyclegan.blocks} blocks")
    return (f"{cfg.toonify.latent_space} projection into G_src ({cfg.toonify.steps} steps), rendered by G_src/G_cartoon "
            f"blended at {cfg.ccn.sampling.blend_resolution} px")


def train_baseline(cfg: DictConfig) -> Path:
    """Train or build ``cfg.baseline``, stylize the test photos with it; returns its model file."""
    prepare_environment()
    check_known_keys(cfg)
    if cfg.baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, got {cfg.baseline!r}")
    ensure_synthetic_data(cfg)
    model = train_cyclegan(cfg) if cfg.baseline == "cyclegan" else build_toonify(cfg)
    if pl.utilities.rank_zero_only.rank == 0 and Path(cfg.data.test_photos).is_dir():
        out = Path(cfg.run_dir) / "stylized" / cfg.baseline
        stylizer = load_baseline(model)
        report = stylize_folder(stylizer, cfg.data.test_photos, out, overwrite=True)
        facts = {"trained_on": trained_on(cfg)}
        errors = getattr(stylizer.backend, "errors", None)  # Toonify: how well each photo was projected into G_src
        if errors:
            facts["projection_error"] = round(float(np.mean(errors)), 6)
        write_provenance(out, model, **facts)
        log.info("%s: %d test photos stylized -> %s", cfg.baseline, len(report.done), out)
    return model
