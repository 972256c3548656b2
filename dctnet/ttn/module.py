"""Stage 2 LightningModule: unpaired photo -> cartoon texture translation (DCT-Net's TTN).

Per iteration:
- discriminator update: surface and texture PatchGANs on real cartoons vs stylized photos (LSGAN or
  hinge; the texture one optionally on another cartoon folder, ``ttn.texture_cartoons``), plus the attribute regressor's supervised fit on photos when the expression loss is on;
- generator update: weighted adversarial terms on both representations, VGG19 content loss against
  the input photo, total variation, and the facial perception loss (expression attributes of the
  output must match the input's labels, or identity embeddings must match, or nothing).
The output is guided-filtered with the input as guide before every loss (official recipe).
"""

from __future__ import annotations

from pathlib import Path

import hydra
import torch
import torch.nn.functional as F

from dctnet.checkpoints import save_model
from dctnet.config import DiscriminatorConfig, IdentityConfig, TTNConfig, UNetConfig
from dctnet.gan_base import GANModule, make_ema, requires_grad
from dctnet.losses.content import CONTENT_NORMS, content_loss, total_variation
from dctnet.losses.gan import adversarial_losses
from dctnet.losses.representations import random_grey_weights, surface, texture
from dctnet.losses.self_similarity import self_similarity_loss
from dctnet.losses.superpixel import superpixel_mean
from dctnet.models.discriminators import AttributeRegressor
from dctnet.models.face import IdentityNet, build_identity_network, cosine_similarity
from dctnet.models.unet import TTN
from dctnet.models.vgg import VGGFeatures

FACE_KINDS = ("expression", "identity", "none")


def build_ttn(cfg: UNetConfig) -> TTN:
    """The ``ttn.model`` node instantiated (its ``_target_``, normally ``dctnet.models.unet.TTN``)."""
    ttn = hydra.utils.instantiate(cfg)
    if not isinstance(ttn, TTN):
        raise TypeError(f"ttn.model._target_={cfg._target_} built a {type(ttn).__name__}; training, export and "
                        "every inference backend need a dctnet.models.unet.TTN (or a subclass)")
    return ttn


def build_discriminator(cfg: DiscriminatorConfig, in_channels: int) -> torch.nn.Module:
    """The ``ttn.discriminator`` node instantiated (its ``_target_``, normally the spectral-norm PatchGAN) for
    images of ``in_channels`` channels."""
    return hydra.utils.instantiate(cfg, in_channels=in_channels, _convert_="all")


def labelled_l1(predicted: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """L1 over the photos that have labels (NaN rows: no face found); 0 when none in the batch has."""
    known = torch.isfinite(labels).all(1)
    if not bool(known.any()):
        return predicted.sum() * 0.0  # keeps the graph (DDP) without moving anything
    return F.l1_loss(predicted[known], labels[known].to(predicted.dtype))


class TTNModule(GANModule):
    def __init__(
        self,
        recipe: TTNConfig,
        out_dir: str,
        sample_every: int,
        identity: IdentityConfig | None = None,
        attribute_count: int = 0,
        sample_photos: torch.Tensor | None = None,
        iterations: int | None = None,
    ) -> None:
        """``recipe``: the typed ``ttn`` node (model, discriminators, losses, optimiser, EMA, warm-up, fine-tuning,
        lr decay); the rest is what a run knows at start: where to write, the identity network's config, the
        photos' attribute count, the preview photos and the run's length (for ``ttn.lr_decay_from``)."""
        super().__init__(out_dir, sample_every, recipe.batch_size)
        model, discriminator, loss = recipe.model, recipe.discriminator, recipe.loss
        if recipe.lr_decay_from is not None:
            if iterations is None:
                raise ValueError("ttn.lr_decay_from needs the run's length: pass iterations")
            self.lr_decay = (recipe.lr_decay_from, iterations)
        if loss.content_norm not in CONTENT_NORMS:
            raise ValueError(f"ttn.loss.content_norm must be one of {CONTENT_NORMS}, got {loss.content_norm!r}")
        if loss.face.kind not in FACE_KINDS:
            raise ValueError(f"ttn.loss.face.kind must be one of {FACE_KINDS}, got {loss.face.kind!r}")
        self.model_cfg, self.loss_cfg = model, loss
        self.lr_g, self.lr_d, self.optimizer_node = recipe.lr_g, recipe.lr_d, recipe.optimizer
        self.generator = build_ttn(model)
        self.generator_ema = make_ema(self.generator)
        self.d_surface = build_discriminator(discriminator, 3)
        self.d_texture = build_discriminator(discriminator, 1)
        # The paper's style discriminator on the image itself: sees colour, noise and sharpness together,
        # which the blurred surface and the grey texture representations each hide. Off (0) in the official recipe.
        self.d_image = build_discriminator(discriminator, 3) if loss.image > 0 else None
        self.d_loss_fn, self.g_loss_fn = adversarial_losses(loss.gan)
        self.vgg = VGGFeatures(loss.vgg_layer, loss.vgg_pretrained, loss.vgg_weights) if loss.content > 0 else None
        self.regressor: AttributeRegressor | None = None
        self.identity: IdentityNet | None = None
        if loss.face.kind == "expression" and loss.face.weight > 0:
            if attribute_count == 0:
                raise ValueError("ttn.loss.face.kind=expression needs facial attributes of the photos: an "
                                 "attributes.csv in the photo folder (`dctnet synth` writes one), or the labels "
                                 "train_ttn.py computes from FAN landmarks (dctnet/data/expression.py). Use "
                                 "ttn.loss.face.kind=identity or none otherwise.")
            self.regressor = AttributeRegressor(attribute_count)
        if loss.face.kind == "identity" and loss.face.weight > 0:
            if identity is None:
                raise ValueError("ttn.loss.face.kind=identity needs the identity network's config (cfg.identity)")
            self.identity = build_identity_network(identity)
        self.ema_half_life_kimg, self.ema_rampup = recipe.ema_half_life_kimg, recipe.ema_rampup
        self.warmup_steps = recipe.warmup_steps
        # (discriminator-only iterations, G learning-rate ramp) when starting from a trained TTN (ttn.init_from)
        self.fine_tune = (recipe.init_from_d_steps, recipe.init_from_lr_ramp) if recipe.init_from else None
        self.register_buffer("sample_photos", sample_photos if sample_photos is not None else torch.zeros(0, 3, 8, 8),
                             persistent=False)
        # channels_last weights (and, in training_iteration, images): oneDNN's convolutions and VGG's max pooling
        # skip their layout reorders. Measured on the 2-core Xeon with AMX in bf16, interleaved A/B of the bare
        # iteration: the learning benchmark's TTN ~335 -> ~250 ms on one thread, the demo's ~214 -> ~180 ms on two.
        # (CycleGAN's instance norms and reflection pads gained nothing: it stays NCHW.) Exports are contiguous.
        self.to(memory_format=torch.channels_last)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        d_params = [p for net in self._discriminators() for p in net.parameters()]
        return self.optimizer_pair(self.optimizer_node, d_params, self.lr_d, self.generator.parameters(), self.lr_g)

    def stylize(self, photo: torch.Tensor, ema: bool = False) -> torch.Tensor:
        return (self.generator_ema if ema else self.generator)(photo, clamp=False)

    def _discriminators(self) -> list[torch.nn.Module]:
        return [net for net in (self.d_surface, self.d_texture, self.d_image, self.regressor) if net is not None]

    def _representations(self, image: torch.Tensor, grey: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return surface(image, self.loss_cfg.surface_radius, self.loss_cfg.surface_eps), texture(image, grey)

    def training_iteration(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        batch = {k: v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v for k, v in batch.items()}
        photo, cartoon = batch["photo"], batch["cartoon"]
        iteration = self.iteration
        labels = batch.get("photo_attributes")
        opt_d, opt_g = self.optimizers()
        self.scale_learning_rates(iteration)
        grey = random_grey_weights(device=photo.device)
        logs: dict[str, torch.Tensor] = {}

        # discriminators (+ attribute regressor on real photos)
        requires_grad(self.generator, False)
        for net in self._discriminators():
            requires_grad(net, True)
        with torch.no_grad():
            fake = self.stylize(photo)
        real_s, real_t = self._representations(cartoon, grey)
        if "texture_cartoon" in batch:  # strokes from another folder (ttn.texture_cartoons)
            real_t = texture(batch["texture_cartoon"], grey)
        fake_s, fake_t = self._representations(fake, grey)
        d_surface = self.d_loss_fn(self.d_surface(real_s), self.d_surface(fake_s))
        d_texture = self.d_loss_fn(self.d_texture(real_t), self.d_texture(fake_t))
        d_total = d_surface + d_texture
        if self.d_image is not None:
            d_image = self.d_loss_fn(self.d_image(cartoon), self.d_image(fake))
            d_total = d_total + d_image
            logs["d_image"] = d_image.detach()
        if self.regressor is not None and labels is not None:
            regressor_loss = labelled_l1(self.regressor(photo), labels)
            d_total = d_total + regressor_loss
            logs["regressor_loss"] = regressor_loss.detach()
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(d_total)
        opt_d.step()
        logs.update(d_surface=d_surface.detach(), d_texture=d_texture.detach())

        if self.fine_tune is not None and iteration < self.fine_tune[0]:
            # Fine-tuning: the new discriminators catch up with the trained generator first. The G step without
            # gradients changes nothing (Adam skips parameters without .grad) but keeps 2 optimiser steps an iteration.
            opt_g.zero_grad(set_to_none=True)
            opt_g.step()
            return logs

        # generator
        requires_grad(self.generator, True)
        for net in self._discriminators():
            requires_grad(net, False)
        fake = self.stylize(photo)
        if self.fine_tune is not None:
            d_steps, ramp = self.fine_tune
            for group in opt_g.param_groups:
                group["lr"] *= min(1.0, (iteration - d_steps + 1) / max(ramp, 1))
        if iteration < self.warmup_steps and self.fine_tune is None:  # White-box's pretraining: identity first
            total = F.l1_loss(fake, photo)
            logs["reconstruction"] = total.detach()
        else:
            total = self._generator_loss(photo, fake, grey, labels, logs)
            logs["g_total"] = total.detach()
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(total)
        opt_g.step()
        self.step_ema(iteration, self.ema_half_life_kimg, self.ema_rampup if self.fine_tune is None else None)
        return logs

    def _generator_loss(self, photo: torch.Tensor, fake: torch.Tensor, grey: torch.Tensor,
                        labels: torch.Tensor | None, logs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The weighted stage-2 generator objective; each term is also written to ``logs``."""
        w = self.loss_cfg
        fake_s, fake_t = self._representations(fake, grey)
        g_surface = self.g_loss_fn(self.d_surface(fake_s))
        g_texture = self.g_loss_fn(self.d_texture(fake_t))
        total = w.surface * g_surface + w.texture * g_texture
        logs.update(g_surface=g_surface.detach(), g_texture=g_texture.detach())
        if self.d_image is not None:
            g_image = self.g_loss_fn(self.d_image(fake))
            total = total + w.image * g_image
            logs["g_image"] = g_image.detach()
        if self.vgg is not None:
            content = content_loss(self.vgg(fake), self.vgg(photo), w.content_norm)
            total = total + w.content * content
            logs["content"] = content.detach()
        if w.superpixel > 0:  # the structure representation: ask for flat, segment-wise constant colours
            structure = F.l1_loss(fake, superpixel_mean(fake.detach(), w.superpixel_segments))
            total = total + w.superpixel * structure
            logs["superpixel"] = structure.detach()
        if w.self_similarity > 0:  # keep the photo's regions apart: no skin painted in the hair's hue
            similarity = self_similarity_loss(fake, photo, w.self_similarity_cells)
            total = total + w.self_similarity * similarity
            logs["self_similarity"] = similarity.detach()
        if w.tv > 0:
            tv = total_variation(fake)
            total = total + w.tv * tv
            logs["tv"] = tv.detach()
        if self.regressor is not None and labels is not None:
            face = labelled_l1(self.regressor(fake), labels)
            total = total + w.face.weight * face
            logs["face_expression"] = face.detach()
        if self.identity is not None:
            face = (1 - cosine_similarity(self.identity(fake), self.identity(photo))).mean()
            total = total + w.face.weight * face
            logs["face_identity"] = face.detach()
        return total

    @torch.no_grad()
    def sample_rows(self) -> list[torch.Tensor]:
        photos = self.sample_photos.to(self.device)
        if photos.numel() == 0:
            return [torch.zeros(1, 3, 8, 8)]
        return [photos, self.stylize(photos, ema=True).clamp(-1, 1)]

    def export(self, path: Path) -> Path:
        ttn = self.generator_ema
        return save_model(Path(path) / "ttn.safetensors", ttn.network.state_dict(), kind="ttn", arch=ttn.arch(),
                          extra={"loss_recipe": self.loss_cfg.recipe, **self.export_extras()})
