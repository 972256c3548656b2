"""CycleGAN baseline as a LightningModule on the shared GAN base (same data module, GEM, resume and guard).

Per iteration: one update of both discriminators (LSGAN, each on a history of generated images: the image
pool) and one update of both generators (LSGAN + cycle L1 + identity L1). The learning rate is constant, then
decays linearly to zero over the last ``1 - decay_from`` of the run, as the reference schedule
(``--n_epochs`` then ``--n_epochs_decay``). The exported model is the photo -> cartoon generator.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from dctnet.checkpoints import save_model
from dctnet.config import CycleGANConfig
from dctnet.gan_base import GANModule, requires_grad
from dctnet.baselines.cyclegan_nets import NLayerDiscriminator, ResnetGenerator, init_weights

KIND = "cyclegan"


def build_cyclegan_generator(cfg: CycleGANConfig) -> ResnetGenerator:
    return ResnetGenerator(cfg.ngf, cfg.blocks, cfg.downsamples)


def lsgan_d(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """The reference D objective: half the sum of the real and fake mean squared errors."""
    return 0.5 * (F.mse_loss(real, torch.ones_like(real)) + F.mse_loss(fake, torch.zeros_like(fake)))


def lsgan_g(fake: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(fake, torch.ones_like(fake))


class ImagePool(torch.nn.Module):
    """The reference image buffer: up to ``size`` past fakes; each query image is swapped with a stored one
    with probability 1/2. Stored as buffers, so a checkpoint carries it and a resumed run draws the same."""

    def __init__(self, size: int, image_size: int) -> None:
        super().__init__()
        self.size = size
        self.register_buffer("images", torch.zeros(size, 3, image_size, image_size))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def query(self, batch: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return batch
        out = []
        for image in batch:
            stored = int(self.count)
            if stored < self.size:
                self.images[stored] = image
                self.count += 1
                out.append(image)
            elif torch.rand(()) < 0.5:
                index = int(torch.randint(self.size, ()))
                out.append(self.images[index].clone())
                self.images[index] = image
            else:
                out.append(image)
        return torch.stack(out)


class CycleGANModule(GANModule):
    """``generator``: photo -> cartoon (exported); ``generator_back``: cartoon -> photo."""

    def __init__(self, cfg: CycleGANConfig, image_size: int, iterations: int, out_dir: str, sample_every: int,
                 sample_photos: torch.Tensor | None = None) -> None:
        super().__init__(out_dir, sample_every, cfg.batch_size)
        self.cfg = cfg
        self.lr_decay = (cfg.decay_from, iterations)
        self.generator = build_cyclegan_generator(cfg)
        self.generator_back = build_cyclegan_generator(cfg)
        self.d_cartoon = NLayerDiscriminator(cfg.ndf, cfg.d_layers)
        self.d_photo = NLayerDiscriminator(cfg.ndf, cfg.d_layers)
        for net in (self.generator, self.generator_back, self.d_cartoon, self.d_photo):
            init_weights(net, cfg.init_gain)
        self.pool_cartoon = ImagePool(cfg.pool_size, image_size)
        self.pool_photo = ImagePool(cfg.pool_size, image_size)
        self.register_buffer("sample_photos", sample_photos if sample_photos is not None else torch.zeros(0, 3, 8, 8),
                             persistent=False)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        discriminators = [*self.d_cartoon.parameters(), *self.d_photo.parameters()]
        generators = [*self.generator.parameters(), *self.generator_back.parameters()]
        return self.optimizer_pair(self.cfg.optimizer, discriminators, self.cfg.lr, generators, self.cfg.lr)

    def training_iteration(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        photo, cartoon = batch["photo"], batch["cartoon"]
        cfg, iteration = self.cfg, self.iteration
        opt_d, opt_g = self.optimizers()
        self.scale_learning_rates(iteration)

        # generators first, as the reference does (its D step sees this step's fakes through the pool)
        requires_grad(self.d_cartoon, False)
        requires_grad(self.d_photo, False)
        fake_cartoon = self.generator(photo)
        fake_photo = self.generator_back(cartoon)
        adversarial = lsgan_g(self.d_cartoon(fake_cartoon)) + lsgan_g(self.d_photo(fake_photo))
        cycle = F.l1_loss(self.generator_back(fake_cartoon), photo) + F.l1_loss(self.generator(fake_photo), cartoon)
        total = adversarial + cfg.cycle * cycle
        logs = {"g_adversarial": adversarial.detach(), "cycle": cycle.detach()}
        if cfg.identity > 0:
            identity = F.l1_loss(self.generator(cartoon), cartoon) + F.l1_loss(self.generator_back(photo), photo)
            total = total + cfg.cycle * cfg.identity * identity
            logs["identity"] = identity.detach()
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(total)
        opt_g.step()

        requires_grad(self.d_cartoon, True)
        requires_grad(self.d_photo, True)
        pooled_cartoon = self.pool_cartoon.query(fake_cartoon.detach())
        pooled_photo = self.pool_photo.query(fake_photo.detach())
        d_cartoon = lsgan_d(self.d_cartoon(cartoon), self.d_cartoon(pooled_cartoon))
        d_photo = lsgan_d(self.d_photo(photo), self.d_photo(pooled_photo))
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(d_cartoon + d_photo)
        opt_d.step()
        logs.update(d_cartoon=d_cartoon.detach(), d_photo=d_photo.detach())
        return logs

    @torch.no_grad()
    def sample_rows(self) -> list[torch.Tensor]:
        photos = self.sample_photos.to(self.device)
        if photos.numel() == 0:
            return [torch.zeros(1, 3, 8, 8)]
        self.generator.eval()
        self.generator_back.eval()
        cartoons = self.generator(photos)
        back = self.generator_back(cartoons)
        self.generator.train()
        self.generator_back.train()
        return [photos, cartoons.clamp(-1, 1), back.clamp(-1, 1)]

    def export(self, path: Path) -> Path:
        arch = {"ngf": self.cfg.ngf, "blocks": self.cfg.blocks, "downsamples": self.cfg.downsamples}
        return save_model(Path(path) / "cyclegan.safetensors", self.generator.state_dict(), kind=KIND, arch=arch,
                          extra=self.export_extras())
