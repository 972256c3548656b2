"""Stage 1 LightningModule: StyleGAN2 pretraining from scratch, or few-shot adaptation of G_src to cartoons.

Per iteration: one discriminator update (non-saturating loss, lazy R1 folded into the same step every
``r1_every`` iterations, DiffAugment on both real and fake when configured) and one generator update
(non-saturating loss, style mixing, lazy path-length regularisation, and in ``adapt`` mode a
differentiable identity loss 1 - cos(id(G(z)), id(G_src(z))) with shared noise, the colour-layout loss
that keeps G(z)'s coarse colours one affine colour map of G_src(z)'s, and the self-similarity loss that keeps
which of G(z)'s coarse cells look alike as in G_src(z)). With ``patch_discriminator`` the
adapting D judges patches, not whole images (``Discriminator``). The generator EMA
is what sampling and export use. Both optimisers are instantiated from the stage's ``optimizer`` node.
"""

from __future__ import annotations

import random
from fnmatch import fnmatch
from pathlib import Path

import torch

from dctnet.checkpoints import load_strict, save_model
from dctnet.config import CCNStageConfig, IdentityConfig, StyleGANConfig
from dctnet.gan_base import GANModule, make_ema, requires_grad
from dctnet.losses.colour_layout import colour_layout_loss
from dctnet.losses.diffaugment import diff_augment
from dctnet.losses.gan import d_logistic_loss, d_r1_loss, g_nonsaturating_loss, g_path_regularize
from dctnet.losses.self_similarity import self_similarity_loss
from dctnet.models.face import IdentityNet, build_identity_network, cosine_similarity
from dctnet.models.stylegan2 import Discriminator, Generator
from dctnet.precision import full_precision


def build_generator(model: StyleGANConfig) -> Generator:
    """rosinality's StyleGAN2 generator of the ``ccn.model`` shape.

    Unlike the TTN, its discriminators and the optimisers, the class is not a config ``_target_``: G_src
    checkpoints (rosinality's, FFHQ) must load by that project's parameter names, and exports record the shape
    only, which is what Toonify files and cached G_src are rebuilt from; instantiating a class named in a file's
    header would let a checkpoint run code.
    """
    return Generator(model.size, model.style_dim, model.n_mlp, model.channel_multiplier, lr_mlp=model.lr_mlp,
                     channel_max=model.channel_max)


def build_discriminator(model: StyleGANConfig, patch_resolution: int | None = None,
                        image_weight: float = 0.0) -> Discriminator:
    """rosinality's StyleGAN2 discriminator; with ``patch_resolution`` it judges patches, and with
    ``image_weight`` the whole image beside them (``Discriminator``)."""
    return Discriminator(model.size, model.channel_multiplier, channel_max=model.channel_max,
                         patch_resolution=patch_resolution, image_weight=image_weight)


def load_discriminator_weights(discriminator: Discriminator, state: dict[str, torch.Tensor], source: str) -> None:
    """Load a D's weights strictly; a patch D may take a whole-image D's (its ``patch_head`` then starts fresh)."""
    fresh_head = {k: v for k, v in discriminator.state_dict().items() if k.startswith("patch_head.")}
    load_strict(discriminator, {**fresh_head, **state}, source)


def make_noise(generator: Generator, batch: int, device: torch.device | str,
               rng: torch.Generator | None = None) -> list[torch.Tensor]:
    """Per-sample noise maps for every synthesis layer (shared between paired generators).

    With ``rng`` (a CPU ``torch.Generator``) the maps depend on that seed only, not on the global stream.
    """
    sizes = [4] + [2**i for i in range(3, generator.log_size + 1) for _ in range(2)]
    if rng is None:
        return [torch.randn(batch, 1, s, s, device=device) for s in sizes]
    return [torch.randn(batch, 1, s, s, generator=rng).to(device) for s in sizes]


class CCNModule(GANModule):
    """One stage-1 training stage. ``source_state``: G_src weights (adapt mode), loaded into G, D and G_src."""

    def __init__(
        self,
        model: StyleGANConfig,
        stage: CCNStageConfig,
        mode: str,
        out_dir: str,
        sample_every: int,
        identity: IdentityConfig | None = None,
        source_state: dict[str, dict[str, torch.Tensor]] | None = None,
        preview: tuple[int, int] = (8, 1234),
    ) -> None:
        """``preview``: (count, seed) of the fixed latents drawn in every progress grid (``trainer.preview_*``)."""
        super().__init__(out_dir, sample_every, stage.batch_size)
        if mode not in ("pretrain", "adapt"):
            raise ValueError(f"mode must be pretrain or adapt, got {mode!r}")
        if mode == "pretrain" and stage.patch_discriminator:
            raise ValueError("patch_discriminator is for few-shot adaptation; pretraining G_src needs a whole-image D")
        if stage.patch_image_weight and not stage.patch_discriminator:
            raise ValueError("patch_image_weight weighs a patch D's whole-image logit: it needs patch_discriminator > 0")
        self.model_cfg, self.stage, self.mode = model, stage, mode
        self.generator = build_generator(model)
        self.discriminator = build_discriminator(model, stage.patch_discriminator or None, stage.patch_image_weight)
        self.source: Generator | None = None
        self.identity: IdentityNet | None = None
        if source_state is not None:
            self.generator.load_state_dict(source_state["g_ema"])
            if "d" in source_state:
                load_discriminator_weights(self.discriminator, source_state["d"], "G_src's discriminator")
        if mode == "adapt":
            if source_state is None:
                raise ValueError("adapt mode needs a source generator (ccn.source_checkpoint or a pretrain stage)")
            self.source = build_generator(model)
            self.source.load_state_dict(source_state["g_ema"])
            requires_grad(self.source, False)
            self.source.eval()
            if stage.identity_weight > 0:
                if identity is None:
                    raise ValueError("identity_weight > 0 needs an identity network config")
                self.identity = build_identity_network(identity)
        self.generator_ema = make_ema(self.generator)
        self.frozen = [name for name, _ in self.generator.named_parameters()
                       if any(name.startswith(pattern) or fnmatch(name, pattern) for pattern in stage.freeze)]
        for name, parameter in self.generator.named_parameters():
            if name in self.frozen:
                parameter.requires_grad_(False)
        self.register_buffer("mean_path_length", torch.zeros(()))
        count, seed = preview
        self.register_buffer("fixed_z", torch.randn(count, model.style_dim, generator=torch.Generator().manual_seed(seed)))

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        trainable = [p for n, p in self.generator.named_parameters() if n not in self.frozen]
        return self.optimizer_pair(self.stage.optimizer, self.discriminator.parameters(), self.stage.lr, trainable,
                                   self.stage.lr)

    def train(self, mode: bool = True) -> "CCNModule":
        super().train(mode)
        if self.source is not None:
            self.source.eval()
        self.generator_ema.eval()
        return self

    def _latents(self, batch: int) -> list[torch.Tensor]:
        z = torch.randn(batch, self.model_cfg.style_dim, device=self.device)
        if self.stage.mixing > 0 and random.random() < self.stage.mixing:
            return [z, torch.randn_like(z)]
        return [z]

    def _augment(self, images: torch.Tensor) -> torch.Tensor:
        return diff_augment(images, self.stage.diffaugment) if self.stage.diffaugment else images

    def training_iteration(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        real = batch["image"]
        if self.stage.flip:
            flip = torch.rand(real.shape[0], device=real.device) < 0.5
            real = torch.where(flip[:, None, None, None], real.flip(3), real)
        n = real.shape[0]
        iteration = self.iteration
        opt_d, opt_g = self.optimizers()
        logs: dict[str, torch.Tensor] = {}

        # discriminator
        requires_grad(self.generator, False)
        requires_grad(self.discriminator, True)
        with torch.no_grad():
            fake, _ = self.generator(self._latents(n))
        do_r1 = self.stage.r1 > 0 and iteration % self.stage.r1_every == 0
        real_input = real.detach().requires_grad_(do_r1)
        # R1 is a squared input gradient: in bf16 (7-bit mantissa) it is mostly rounding, so the R1 iterations
        # run D in fp32 (`trainer.precision=bf16-mixed` keeps the other 3 of r1_every in bf16).
        with full_precision(do_r1, real.device):
            real_pred = self.discriminator(self._augment(real_input))
        fake_pred = self.discriminator(self._augment(fake))
        d_loss = d_logistic_loss(real_pred, fake_pred, self.discriminator.logit_weights)
        total = d_loss
        if do_r1:
            # per image: a patch D's logits are averaged first (weighted), as its loss does (their sum's gradient
            # would weigh R1 r*r times more and hold that D at chance: measured, d_loss at 2 log 2 for 400 iterations)
            r1 = d_r1_loss(self.discriminator.score(real_pred), real_input)
            total = total + self.stage.r1 / 2 * r1 * self.stage.r1_every
            logs["r1"] = r1.detach()
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(total)
        opt_d.step()
        logs.update(d_loss=d_loss.detach(), real_score=self.discriminator.score(real_pred).mean().detach(),
                    fake_score=self.discriminator.score(fake_pred).mean().detach())

        # generator
        requires_grad(self.discriminator, False)
        for name, parameter in self.generator.named_parameters():
            parameter.requires_grad_(name not in self.frozen)
        noise = make_noise(self.generator, n, self.device)
        latents = self._latents(n)
        inject = random.randint(1, self.generator.n_latent - 1) if len(latents) > 1 else None
        fake, _ = self.generator(latents, noise=noise, inject_index=inject)
        g_loss = g_nonsaturating_loss(self.discriminator(self._augment(fake)), self.discriminator.logit_weights)
        total = g_loss
        logs["g_loss"] = g_loss.detach()
        if self.source is not None and (self.identity is not None or self.stage.colour_layout_weight > 0
                                        or self.stage.self_similarity_weight > 0):
            with torch.no_grad():
                source_image, _ = self.source(latents, noise=noise, inject_index=inject)
            if self.identity is not None:
                identity_loss = (1 - cosine_similarity(self.identity(fake), self.identity(source_image))).mean()
                total = total + self.stage.identity_weight * identity_loss
                logs["identity_loss"] = identity_loss.detach()
            if self.stage.colour_layout_weight > 0:
                layout_loss = colour_layout_loss(fake, source_image, self.stage.colour_layout_cells)
                total = total + self.stage.colour_layout_weight * layout_loss
                logs["colour_layout_loss"] = layout_loss.detach()
            if self.stage.self_similarity_weight > 0:
                similarity_loss = self_similarity_loss(fake, source_image, self.stage.self_similarity_cells)
                total = total + self.stage.self_similarity_weight * similarity_loss
                logs["self_similarity_loss"] = similarity_loss.detach()
        if self.stage.path_length > 0 and iteration % self.stage.path_every == 0:
            path_batch = max(1, n // self.stage.path_batch_shrink)
            with full_precision(True, real.device):  # a gradient norm against its running mean: fp32
                path_latents = self.generator.broadcast_latents(
                    [self.generator.style(z) for z in self._latents(path_batch)])
                if not path_latents.requires_grad:  # frozen mapping network: regularise synthesis alone
                    path_latents = path_latents.detach().requires_grad_(True)
                path_fake = self.generator.synthesis(path_latents, [None] * self.generator.num_layers)
                penalty, self.mean_path_length, path_mean = g_path_regularize(path_fake, path_latents,
                                                                              self.mean_path_length)
            total = total + self.stage.path_length * self.stage.path_every * penalty
            logs["path_length"] = path_mean
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(total)
        opt_g.step()
        self.step_ema(iteration, self.stage.ema_half_life_kimg, self.stage.ema_rampup)
        return logs

    @torch.no_grad()
    def sample_rows(self) -> list[torch.Tensor]:
        z = self.fixed_z.to(self.device)
        rows = [self.generator_ema([z], randomize_noise=False)[0]]
        if self.source is not None:
            rows.insert(0, self.source([z], randomize_noise=False)[0])
        return [r.clamp(-1, 1) for r in rows]

    def export(self, path: Path) -> Path:
        arch = {k: getattr(self.model_cfg, k) for k in ("size", "style_dim", "n_mlp", "channel_multiplier",
                                                           "channel_max", "lr_mlp")}
        state = {f"g_ema.{k}": v for k, v in self.generator_ema.state_dict().items()}
        state.update({f"d.{k}": v for k, v in self.discriminator.state_dict().items()})
        return save_model(Path(path) / "ccn.safetensors", state, kind="stylegan2", arch=arch,
                          extra={"mode": self.mode, "patch_discriminator": self.discriminator.patch_resolution,
                                 "patch_image_weight": self.discriminator.image_weight,
                                 **self.export_extras()})
