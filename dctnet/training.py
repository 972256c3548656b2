"""Builds and runs a Lightning Trainer for one GAN stage from the run config (both stages use it).

Owns what every run shares: output folders, the resolved config saved beside the checkpoints, the
logger from ``conf/logger``, ``last.ckpt`` every ``trainer.checkpoint_every`` iterations, resume
(``resume=auto`` continues from ``last.ckpt``; SLURM requeue works through Lightning), and the
conversion of user-facing iterations to Lightning's optimiser-step count.
"""

from __future__ import annotations

import logging
import os
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from lightning_fabric.plugins import TorchCheckpointIO
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint

from dctnet.atomic import replace_atomically, write_text_atomic
from dctnet.config import GemConfig, typed
from dctnet.data.datamodule import GANDataModule
from dctnet.data.synthetic import ensure_dataset
from dctnet.gan_base import STEPS_PER_ITERATION, TrainingDiverged
from dctnet.precision import resolve_precision

log = logging.getLogger(__name__)


def prepare_environment() -> None:
    """Quiet, offline-safe defaults for third-party libraries, and silence warnings that do not apply."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    os.environ.setdefault("WANDB_MODE", "offline")
    # We checkpoint after both optimiser steps on purpose (the state a resumed run continues from).
    warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization")
    # Frozen helper networks (EMA, G_src, VGG, identity) are in eval mode by design.
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=r".*smaller than the logging interval.*")


def ensure_synthetic_data(cfg: DictConfig) -> None:
    """Generate the synthetic dataset under ``data.root`` if the config asks for it and it is absent."""
    synth = cfg.data.synthetic
    if synth.generate:
        ensure_dataset(cfg.data.root, size=synth.size, photos=synth.photos, cartoons=synth.cartoons,
                       test=synth.test, seed=synth.seed, exemplars_without=list(synth.exemplars_without),
                       skin_tones=synth.skin_tones, exemplars_keep=synth.exemplars_keep)


def resume_path(cfg: DictConfig, stage_dir: Path) -> str | None:
    """Which checkpoint to resume from: ``resume=auto|force|never|<path>`` (force: auto, config changes allowed)."""
    if cfg.resume == "never":
        return None
    if cfg.resume in ("auto", "force"):
        last = stage_dir / "checkpoints" / "last.ckpt"
        return str(last) if last.is_file() else None
    if not Path(cfg.resume).is_file():
        raise FileNotFoundError(f"resume={cfg.resume}: no such checkpoint")
    return str(cfg.resume)


def iterations_for(cfg: DictConfig, stage_steps: int) -> int:
    """The stage length in iterations: ``trainer.max_steps`` overrides every stage's own ``steps``."""
    iterations = int(cfg.trainer.max_steps) if cfg.trainer.max_steps is not None else int(stage_steps)
    if iterations < 0:
        raise ValueError(f"the number of iterations must be >= 0 (trainer.max_steps or the stage's steps), "
                         f"got {iterations}")
    return iterations


def preview_photos(cfg: DictConfig) -> torch.Tensor:
    """The first ``trainer.preview_count`` test photos (training photos without a test folder) for progress grids."""
    from dctnet.data.decode import to_tensor
    from dctnet.data.folders import ImageFolder

    source = cfg.data.test_photos if Path(cfg.data.test_photos).is_dir() else cfg.data.photos
    folder = ImageFolder(source, cfg.data.size, cfg.data.loader.max_pixels)
    return torch.stack([to_tensor(folder.load(i)) for i in range(min(int(cfg.trainer.preview_count), len(folder)))])


def gan_datamodule(cfg: DictConfig, domains: dict[str, str | list[str]], batch_size: int, seed: int,
                   iterations: int, size: int | None = None, gem: bool = True) -> GANDataModule:
    """The data module of any GAN stage over ``domains``: ``hydra.utils.instantiate(data.loader)`` (its class and
    loading keys) with the stage's own arguments. ``size``: the stage's resolution (default ``data.size``);
    ``gem``: geometric expansion (``data.gem``)."""
    import hydra

    data = cfg.data
    build = hydra.utils.instantiate(data.loader, _partial_=True, _convert_="all")
    datamodule = build(domains, size=size or data.size, batch_size=batch_size, seed=seed, total_iterations=iterations,
                       gem=typed(data.gem, GemConfig) if gem else None)
    if not isinstance(datamodule, GANDataModule):
        raise TypeError(f"data.loader._target_={data.loader._target_} built a {type(datamodule).__name__}, not a "
                        "dctnet.data.datamodule.GANDataModule (or a subclass)")
    return datamodule


def check_optimiser(prefix: str, batch_size: int, optimizer: Any) -> None:
    """Clear errors for settings that would otherwise fail deep inside a library (the optimiser node's class and,
    for Adam-like optimisers, its betas)."""
    if int(batch_size) < 1:
        raise ValueError(f"{prefix}.batch_size must be >= 1, got {batch_size}")
    if not optimizer or "_target_" not in optimizer:
        raise ValueError(f"{prefix}.optimizer needs a _target_ (a torch.optim class, e.g. torch.optim.Adam)")
    betas = optimizer.get("betas")
    if betas is not None and (len(betas) != 2 or not all(0 <= float(b) < 1 for b in betas)):
        raise ValueError(f"{prefix}.optimizer.betas must be two numbers in [0, 1) (Adam's beta1, beta2), "
                         f"got {list(betas)}")


class KeepPreviousCheckpoint(pl.Callback):
    """Before ``last.ckpt`` is overwritten, keep it as ``previous.ckpt`` (copied beside it, then renamed).

    A divergence is detected one iteration after the update that caused it, so ``last.ckpt`` may already
    hold the bad step; a rollback returns to ``previous.ckpt``, one checkpoint period older.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        last = self.directory / "last.ckpt"
        if trainer.is_global_zero and last.is_file():
            replace_atomically(self.directory / "previous.ckpt", lambda temporary: shutil.copyfile(last, temporary),
                               ".ckpt")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Each checkpoint is written to a temporary file beside its target, then renamed over it.

    Lightning's own atomic save stages the file in ``$TMPDIR`` and moves it; across filesystems that move is
    a copy, and a kill during it truncates ``last.ckpt``. A rename within one folder cannot be half done.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        replace_atomically(path, lambda temporary: torch.save(checkpoint, temporary), ".ckpt")


def remove_interrupted_writes(directory: Path) -> None:
    """Temporaries of writes killed mid-way (``.<name>.*.ckpt`` beside their targets) are deleted."""
    for leftover in Path(directory).glob(".*.ckpt"):
        leftover.unlink(missing_ok=True)


def rollback_checkpoint(stage_dir: Path) -> Path | None:
    """The checkpoint a rollback returns to: ``previous.ckpt`` if kept, else ``last.ckpt``, else none."""
    for name in ("previous.ckpt", "last.ckpt"):
        path = stage_dir / "checkpoints" / name
        if path.is_file():
            return path
    return None


# Keys of conf/trainer that dctnet reads itself; every other key is an argument of the node's ``_target_``.
OWN_TRAINER_KEYS = ("max_steps", "precision", "checkpoint_every", "sample_every", "preview_count", "preview_seed",
                    "divergence")


def build_trainer(cfg: DictConfig, stage_dir: Path, iterations: int, extra_callbacks: list[Any] | None = None) -> pl.Trainer:
    """``cfg.trainer`` instantiated (Lightning's own keys as they are), with what a GAN stage must fix itself."""
    t = cfg.trainer
    checkpoint = ModelCheckpoint(
        dirpath=stage_dir / "checkpoints",
        filename="iter_{step}",
        save_last=True,
        save_top_k=0,
        every_n_train_steps=max(1, int(t.checkpoint_every)) * STEPS_PER_ITERATION,
        save_on_train_epoch_end=True,
        # never last-v1.ckpt: a re-run with another checkpoint_every must overwrite (and resume from) last.ckpt
        enable_version_counter=False,
    )
    loggers = []
    if cfg.logger is not None:
        loggers.append(hydra.utils.instantiate(cfg.logger, save_dir=str(stage_dir)))
    lightning = OmegaConf.masked_copy(t, [key for key in t if key not in OWN_TRAINER_KEYS])
    return hydra.utils.instantiate(
        lightning,
        precision=resolve_precision(str(t.precision), str(t.accelerator)),  # "auto" is ours: bf16 where it helps
        max_steps=iterations * STEPS_PER_ITERATION,  # Lightning counts optimiser steps, two per iteration
        max_epochs=-1,
        default_root_dir=str(stage_dir),
        callbacks=[KeepPreviousCheckpoint(stage_dir / "checkpoints"), checkpoint, *(extra_callbacks or [])],
        plugins=[AtomicCheckpointIO()],
        logger=loggers or False,
        use_distributed_sampler=False,  # our sampler draws a per-rank stream (dctnet.data.datamodule)
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )


# Keys a re-run may change without changing the recipe: run length, logging and where it runs.
RERUN_FREE_KEYS = ("resume", "trainer.max_steps", "trainer.enable_progress_bar", "trainer.sample_every",
                   "trainer.checkpoint_every", "trainer.log_every_n_steps", "trainer.accelerator", "trainer.devices",
                   "trainer.num_nodes", "trainer.strategy", "trainer.divergence", "logger", "data.loader.num_workers",
                   "trainer.preview_count", "trainer.preview_seed", "ttn.steps", "ccn.pretrain.steps",
                   "ccn.adapt.steps", "ccn.stages", "cyclegan.steps", "evaluate", "baseline", "toonify")


def _leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        return {k: v for key, value in node.items() for k, v in _leaves(value, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): node}


def config_changes(previous: Path, cfg: DictConfig, free_keys: Sequence[str] = ()) -> list[str]:
    """``key: old -> new`` for every recipe key that differs from the run's saved ``config.yaml``; keys in
    ``RERUN_FREE_KEYS`` or ``free_keys`` (and their sub-keys) are not part of the stage's recipe."""
    old = _leaves(OmegaConf.to_container(OmegaConf.load(previous), resolve=True))
    new = _leaves(OmegaConf.to_container(cfg, resolve=True))
    ignored = (*RERUN_FREE_KEYS, *free_keys)
    free = lambda key: any(key == k or key.startswith(k + ".") for k in ignored)  # noqa: E731
    return [f"{key}: {old.get(key, '<absent>')!r} -> {new.get(key, '<absent>')!r}"
            for key in sorted(set(old) | set(new)) if not free(key) and old.get(key) != new.get(key)]


def refuse_changed_rerun(cfg: DictConfig, stage_dir: Path, ckpt: str | None, free_keys: Sequence[str] = ()) -> None:
    """Continuing a run with another recipe would silently mix two experiments: say what changed, and stop.
    ``free_keys``: keys this stage does not read (a later stage's section), which may change freely."""
    previous = stage_dir / "config.yaml"
    if ckpt is None or cfg.resume == "force" or not previous.is_file():
        return
    changes = config_changes(previous, cfg, free_keys)
    if changes:
        raise ValueError(f"{stage_dir} was trained with another config; resuming would mix two recipes. Changed:\n  "
                         + "\n  ".join(changes[:20]) + "\nUse a new run_dir, resume=never to start over, or "
                         "resume=force to continue anyway.")


def save_run_config(cfg: DictConfig, stage_dir: Path) -> None:
    stage_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(stage_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))


DIVERGENCE_ACTIONS = ("rollback", "stop")


def fit_stage(cfg: DictConfig, module: pl.LightningModule, datamodule: pl.LightningDataModule, stage_dir: Path,
              iterations: int, free_keys: Sequence[str] = ()) -> pl.Trainer:
    """Fit ``module`` for ``iterations`` iterations in ``stage_dir``, resuming per ``cfg.resume``.

    If training diverges (:class:`TrainingDiverged`), nothing is checkpointed or exported after it;
    with ``trainer.divergence.action=rollback`` the fit restarts from the last good ``last.ckpt`` with
    every learning rate scaled by ``lr_factor`` (at most ``max_rollbacks`` times), else the error stands.
    """
    guard = cfg.trainer.divergence
    if guard.action not in DIVERGENCE_ACTIONS:
        raise ValueError(f"trainer.divergence.action must be one of {DIVERGENCE_ACTIONS}, got {guard.action!r}")
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    ckpt = resume_path(cfg, stage_dir)
    refuse_changed_rerun(cfg, stage_dir, ckpt, free_keys)
    save_run_config(cfg, stage_dir)
    remove_interrupted_writes(stage_dir / "checkpoints")
    module.max_d_loss = float(guard.max_d_loss)
    if ckpt:
        log.info("resuming %s from %s", stage_dir.name, ckpt)
    for rollback in range(int(guard.max_rollbacks) + 1):
        trainer = build_trainer(cfg, stage_dir, iterations)
        try:
            # explicit: a planted checkpoint must not run code, whatever TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD says
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt, weights_only=True)
            return trainer
        except TrainingDiverged as error:
            good = rollback_checkpoint(stage_dir)
            if guard.action == "stop" or rollback == guard.max_rollbacks or good is None:
                why = ("trainer.divergence.action=stop" if guard.action == "stop" else
                       "no checkpoint to roll back to" if good is None else f"{guard.max_rollbacks} rollbacks used")
                raise TrainingDiverged(error.iteration, f"{error.reason}. Stopped ({why}); no model was exported. "
                                       "Lower the learning rates or the loss weights, or resume from "
                                       f"{good or 'an earlier checkpoint'}.") from error
            module.lr_scale *= float(guard.lr_factor)
            ckpt = str(good)
            log.warning("%s: %s. Rolling back to %s with learning rates x%g (rollback %d of %d)", stage_dir.name,
                        error, good, module.lr_scale, rollback + 1, guard.max_rollbacks)
    raise AssertionError("unreachable")
