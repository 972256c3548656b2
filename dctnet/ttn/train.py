"""Stage 2 driver: unpaired photos -> cartoons (stage-1 calibrated samples or any folder) under ``<run_dir>/ttn``."""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
from omegaconf import DictConfig

from dctnet.config import IdentityConfig, TTNConfig, check_known_keys, typed
from dctnet.data.datamodule import GANDataModule
from dctnet.data.decode import list_images
from dctnet.data.folders import ImageFolder
from dctnet.training import (check_optimiser, ensure_synthetic_data, fit_stage, gan_datamodule, iterations_for,
                             prepare_environment, preview_photos)
from dctnet.ttn.module import TTNModule

log = logging.getLogger(__name__)


def cartoon_folder(cfg: DictConfig) -> str:
    """``ttn.cartoons`` when set (e.g. the calibrated samples), else ``data.cartoons``."""
    return str(cfg.ttn.cartoons) if cfg.ttn.cartoons else str(cfg.data.cartoons)


def cartoon_domain(cfg: DictConfig) -> list[str]:
    """The cartoon domain's folders: ``ttn.cartoons`` then ``ttn.extra_cartoons``, the extra folders repeated so
    that they make about ``ttn.extra_cartoons_share`` of the draws (when set)."""
    main, extra = cartoon_folder(cfg), [str(folder) for folder in cfg.ttn.extra_cartoons]
    share = cfg.ttn.extra_cartoons_share
    if share is None or not extra:
        return [main, *extra]
    if not 0 < share < 1:
        raise ValueError(f"ttn.extra_cartoons_share must be in (0, 1) or null, got {share}")
    main_count, extra_count = len(list_images(main)), sum(len(list_images(folder)) for folder in extra)
    if main_count == 0 or extra_count == 0:
        return [main, *extra]  # the data module names the empty folder
    repeats = max(1, round(share / (1 - share) * main_count / extra_count))
    log.info("cartoon domain: %d images from %s, %d x %d from ttn.extra_cartoons (%.0f %% of the draws)", main_count,
             main, repeats, extra_count, 100 * repeats * extra_count / (main_count + repeats * extra_count))
    return [main, *extra * repeats]


def build_datamodule(cfg: DictConfig, iterations: int) -> GANDataModule:
    """Photos, the cartoon domain (``ttn.cartoons`` + ``ttn.extra_cartoons``) and the texture cartoons, with GEM."""
    ttn = cfg.ttn
    cartoons = cartoon_domain(cfg)
    domains = {"photo": str(cfg.data.photos), "cartoon": cartoons if len(cartoons) > 1 else cartoons[0]}
    if ttn.texture_cartoons:
        domains["texture_cartoon"] = str(ttn.texture_cartoons)
    datamodule = gan_datamodule(cfg, domains, ttn.batch_size, cfg.seed, iterations)
    datamodule.setup()
    return datamodule


def train_ttn(cfg: DictConfig) -> Path:
    """Train the TTN as configured; returns the path of ``ttn.safetensors``."""
    prepare_environment()
    check_known_keys(cfg)
    ensure_synthetic_data(cfg)
    ttn = cfg.ttn
    stage_dir = Path(cfg.run_dir) / "ttn"
    iterations = iterations_for(cfg, ttn.steps)
    check_optimiser("ttn", ttn.batch_size, ttn.optimizer)
    datamodule = build_datamodule(cfg, iterations)
    photos = datamodule.dataset.folders["photo"]
    face = ttn.loss.face
    if face.kind == "expression" and face.weight > 0 and not photos.has_attributes:
        label_photos(photos, face)
    sample_photos = preview_photos(cfg)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)  # initial weights depend on the seed only
    module = TTNModule(typed(ttn, TTNConfig), str(stage_dir), int(cfg.trainer.sample_every),
                       identity=typed(cfg.identity, IdentityConfig), sample_photos=sample_photos, iterations=iterations,
                       attribute_count=len(photos.attribute_names) if photos.has_attributes else 0)
    if ttn.init_from:
        initialise_from(module, Path(ttn.init_from))
    fit_stage(cfg, module, datamodule, stage_dir, iterations)
    return stage_dir / "ttn.safetensors"


def label_photos(photos: ImageFolder, face: DictConfig) -> None:
    """Expression labels from FAN landmarks for a photo folder that has no ``attributes.csv`` (cached beside it)."""
    from dctnet.data.expression import expression_labels

    names, table = expression_labels(photos.files, photos.root, face.eye_open_ratio, face.mouth_open_ratio,
                                     face.landmark_weights)
    photos.set_attributes(names, table)


def initialise_from(module: TTNModule, path: Path) -> None:
    """Load an exported TTN into the generator and its EMA; its U-Net shape must equal the configured one."""
    from dctnet.checkpoints import CheckpointError
    from dctnet.inference.backends import load_ttn

    source = load_ttn(path)  # safetensors only: a file cannot run code
    wanted, found = module.generator.arch(), source.arch()
    shape = ("base_channels", "num_residual", "num_downsamples")
    if any(wanted[key] != found[key] for key in shape):
        raise CheckpointError(f"ttn.init_from={path} is a U-Net with {', '.join(f'{k}={found[k]}' for k in shape)}; "
                              f"ttn.model asks for {', '.join(f'{k}={wanted[k]}' for k in shape)}. Choose the "
                              "matching ttn/model, or another file")
    for target in (module.generator, module.generator_ema):
        target.network.load_state_dict(source.network.state_dict())
    log.info("TTN initialised from %s", path)
