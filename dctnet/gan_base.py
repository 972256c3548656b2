"""Shared base of both stages' LightningModules: everything a GAN loop needs that is not its losses.

- Manual optimisation with one discriminator and one generator update per *iteration*; Lightning's
  ``global_step`` counts optimiser steps (2 per iteration), so ``iteration`` converts.
- Generator EMA as a frozen submodule updated after each G step, buffers copied; the decay comes from
  a half-life counted in images (batch x world size), as StyleGAN does.
- Exact resume: Python, NumPy and torch RNG states are saved in every checkpoint and restored at the
  first batch after resuming (after Lightning has created its data iterators), so a resumed run
  continues the same random stream as an uninterrupted one.
- Divergence guard: after every iteration each logged loss must be finite, discriminator losses below a
  bound and the generator's weights finite; otherwise :class:`TrainingDiverged` stops the fit before
  anything is checkpointed or exported (the driver then rolls back or stops, ``trainer.divergence``).
  ``lr_scale`` multiplies every learning rate (set by a rollback, applied after a checkpoint restore).
- Sample grids every ``sample_every`` iterations (PNG under ``<run>/samples`` and to the logger),
  and the user-facing safetensors export at the end of every run (rank 0 only).
"""

from __future__ import annotations

import copy
import math
import random
from abc import abstractmethod
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from dctnet.data.decode import to_uint8, write_image

STEPS_PER_ITERATION = 2  # one discriminator + one generator optimiser step


class TrainingDiverged(RuntimeError):
    """Training produced non-finite values or an exploding discriminator loss; nothing was saved after it."""

    def __init__(self, iteration: int, reason: str) -> None:
        super().__init__(f"training diverged at iteration {iteration}: {reason}")
        self.iteration, self.reason = iteration, reason


def requires_grad(module: nn.Module, flag: bool) -> None:
    for parameter in module.parameters():
        parameter.requires_grad_(flag)


def build_optimizer(node: Any, params: Any, lr: float) -> torch.optim.Optimizer:
    """``hydra.utils.instantiate(node)`` with the parameters and the learning rate: any ``torch.optim`` class
    (``_target_``) and its options (betas, weight decay, ...) from the config; plain lists, so that checkpoints
    hold no OmegaConf objects (they load with ``weights_only=True``)."""
    import hydra

    optimizer = hydra.utils.instantiate(node, list(params), lr=lr, _convert_="all")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer _target_={node['_target_']} built a {type(optimizer).__name__}, not a "
                        "torch.optim.Optimizer (set _target_ to an optimiser class, without _partial_)")
    return optimizer


def make_ema(module: nn.Module) -> nn.Module:
    ema = copy.deepcopy(module).eval()
    requires_grad(ema, False)
    return ema


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """``ema = decay * ema + (1 - decay) * model`` for parameters; buffers are copied."""
    for p_ema, p in zip(ema.parameters(), model.parameters()):
        p_ema.lerp_(p.detach(), 1.0 - decay)
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)


def ema_decay(images_per_iteration: int, half_life_kimg: float, images_seen: int = 0, rampup: float | None = 0.05) -> float:
    """Per-iteration EMA decay for a half-life counted in thousands of images.

    With ``rampup`` (StyleGAN2-ADA's ``ema_rampup``) the half-life is at most ``rampup * images_seen``,
    so early and short runs do not export a generator stuck near its initialisation.
    """
    half_life = half_life_kimg * 1000.0
    if rampup is not None and rampup > 0:
        half_life = min(half_life, rampup * max(images_seen, images_per_iteration))
    if half_life <= 0:
        return 0.0
    return 0.5 ** (images_per_iteration / half_life)


def image_grid(rows: list[torch.Tensor]) -> np.ndarray:
    """Rows of equally sized image batches ([-1, 1]) -> one uint8 grid, each row one batch."""
    return np.concatenate([np.concatenate(list(to_uint8(row)), axis=1) for row in rows], axis=0)


def _numpy_state_to_safe(state: tuple) -> dict[str, Any]:
    """NumPy's RNG state with its array as a tensor: checkpoints are read with ``weights_only=True``."""
    name, keys, position, has_gauss, cached = state
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
            "has_gauss": int(has_gauss), "cached": float(cached)}


def _numpy_state_from_safe(state: dict[str, Any]) -> tuple:
    return (state["name"], state["keys"].numpy().astype(np.uint32), state["position"], state["has_gauss"],
            state["cached"])


class GANModule(pl.LightningModule):
    """Base class; subclasses implement :meth:`training_iteration`, :meth:`sample_rows` and :meth:`export`."""

    def __init__(self, out_dir: str, sample_every: int, batch_size: int, max_d_loss: float = 100.0) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.max_d_loss = max_d_loss
        self.lr_scale = 1.0
        self.batch_size = batch_size  # per rank
        self.out_dir = str(out_dir)
        self.sample_every = sample_every
        self._pending_rng: dict[str, Any] | None = None
        self.lr_decay: tuple[float, int] | None = None  # (decay_from, iterations): see lr_factor

    def lr_factor(self, iteration: int) -> float:
        """The learning-rate multiplier at ``iteration``: 1, or with ``lr_decay = (decay_from, iterations)`` 1 until
        ``decay_from`` of the run, then linearly down to 0 at its end (CycleGAN's 'linear' policy)."""
        if self.lr_decay is None:
            return 1.0
        decay_from, iterations = self.lr_decay
        start = int(decay_from * iterations)
        if iteration < start:
            return 1.0
        return max(0.0, 1.0 - (iteration - start) / max(1, iterations - start))

    def scale_learning_rates(self, iteration: int) -> None:
        """Every optimiser's lr = its configured lr x ``lr_scale`` (rollbacks) x :meth:`lr_factor`."""
        for optimizer, lr in zip(self.trainer.optimizers, self.configured_lrs):
            for group in optimizer.param_groups:
                group["lr"] = lr * self.lr_scale * self.lr_factor(iteration)

    @property
    def iteration(self) -> int:
        """Completed training iterations (one D and one G update each)."""
        return self.global_step // STEPS_PER_ITERATION

    # ---- the loop -------------------------------------------------------------------------------
    @abstractmethod
    def training_iteration(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One D update and one G update; returns scalars to log."""

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        iteration = self.iteration
        logs = self.training_iteration(batch)
        self.check_divergence(iteration, logs)
        self.log_dict({f"train/{k}": v.detach() if torch.is_tensor(v) else v for k, v in logs.items()},
                      prog_bar=False, on_step=True, on_epoch=False, sync_dist=True)
        if self.sample_every > 0 and (iteration % self.sample_every == 0):
            self.write_samples(iteration)

    def check_divergence(self, iteration: int, logs: dict[str, Any]) -> None:
        """Raise :class:`TrainingDiverged` on a non-finite loss or weight, or a discriminator loss past the bound."""
        values = {k: float(v) for k, v in logs.items()}
        bad = [f"{k}={v}" for k, v in values.items() if not math.isfinite(v)]
        bad += [f"{k}={v:.3g} > trainer.divergence.max_d_loss={self.max_d_loss:g}" for k, v in values.items()
                if k.startswith("d_") and math.isfinite(v) and abs(v) > self.max_d_loss]
        with torch.no_grad():
            weights = torch.stack([p.sum() for p in self.generator.parameters()]).sum()
        if not torch.isfinite(weights):
            bad.append("non-finite generator weights")
        if bad:
            raise TrainingDiverged(iteration, ", ".join(bad))

    def on_train_start(self) -> None:
        """Set every optimiser's lr from the config (:meth:`scale_learning_rates`): after a checkpoint restore the
        config, not the checkpoint, decides the learning rate (and a rollback's scale applies)."""
        self.scale_learning_rates(self.iteration)

    def optimizer_pair(self, node: Any, d_params: Any, lr_d: float, g_params: Any,
                       lr_g: float) -> list[torch.optim.Optimizer]:
        """The discriminator's and the generator's optimisers, in that order, each built by
        ``hydra.utils.instantiate`` from the config ``node`` (e.g. Adam and its betas) with its params and lr;
        remembers the configured lrs (warm-ups and rollbacks scale from them)."""
        self.configured_lrs = [lr_d, lr_g]
        return [build_optimizer(node, params, lr) for params, lr in ((d_params, lr_d), (g_params, lr_g))]

    @property
    def world_size(self) -> int:
        """Number of DDP ranks (1 outside a Trainer): what Lightning resolved from devices and num_nodes."""
        return self.trainer.world_size if self._trainer is not None else 1

    @property
    def images_per_iteration(self) -> int:
        return self.batch_size * self.world_size

    def step_ema(self, iteration: int, half_life_kimg: float, rampup: float | None) -> None:
        """Update ``generator_ema`` from ``generator`` after the G step of ``iteration``."""
        images = self.images_per_iteration
        update_ema(self.generator_ema, self.generator, ema_decay(images, half_life_kimg, (iteration + 1) * images, rampup))

    # ---- samples and export ---------------------------------------------------------------------
    @abstractmethod
    def sample_rows(self) -> list[torch.Tensor]:
        """Rows of images for a progress grid (e.g. input | output)."""

    @abstractmethod
    def export(self, path: Path) -> Path:
        """Write the user-facing safetensors + JSON model file."""

    @torch.no_grad()
    def write_samples(self, iteration: int) -> None:
        if self.trainer is not None and not self.trainer.is_global_zero:
            return
        grid = image_grid(self.sample_rows())
        path = Path(self.out_dir) / "samples" / f"iter_{iteration:06d}.png"
        write_image(path, grid)
        for logger in self.loggers:
            if hasattr(logger, "log_image"):
                logger.log_image(key="samples", images=[grid], step=iteration)

    @torch.no_grad()
    def _generator_digest(self) -> torch.Tensor:
        """Per-parameter sums and sums of squares of G and its EMA: equal on every rank iff DDP kept them in sync."""
        ema = getattr(self, "generator_ema", None)  # baselines such as CycleGAN keep no EMA
        networks = (self.generator, ema) if ema is not None else (self.generator,)
        values = [t.double() for net in networks for p in net.parameters()
                  for t in (p.sum(), p.pow(2).sum())]
        return torch.stack(values)

    def export_extras(self) -> dict[str, Any]:
        """Run facts stored in every export header (JSON): iterations, world size, rank consistency."""
        return {"iterations": self.iteration, "world_size": self.world_size,
                "ranks_identical": getattr(self, "ranks_identical", None)}

    def on_train_end(self) -> None:
        digests = self.all_gather(self._generator_digest())  # every rank takes part
        digests = digests.reshape(-1, digests.shape[-1])
        self.ranks_identical = bool(torch.equal(digests, digests[:1].expand_as(digests)))
        if self.trainer.is_global_zero:
            self.write_samples(self.iteration)
            self.export(Path(self.out_dir))

    # ---- exact resume -----------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["dctnet_rng"] = {
            "python": random.getstate(),
            "numpy": _numpy_state_to_safe(np.random.get_state()),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._pending_rng = checkpoint.get("dctnet_rng")

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self._pending_rng is not None:
            state = self._pending_rng
            random.setstate(state["python"])
            np.random.set_state(_numpy_state_from_safe(state["numpy"]))
            torch.set_rng_state(state["torch"])
            if state["cuda"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(state["cuda"])
            self._pending_rng = None
