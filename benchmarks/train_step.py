"""Framework overhead of training: one iteration inside the Lightning Trainer vs a bare PyTorch loop over
the same networks, losses and batch, for stage 2 (G + both discriminators + VGG content) and stage 1
(StyleGAN2 D + G, lazy R1 amortised); the stage-2 iteration in bf16-mixed against fp32 where the device
has bf16 units; and the data pipeline's rate next to the step rate.

    python benchmarks/train_step.py [--ttn-size 256] [--ttn-batch 4] [--ccn-size 64] [--ccn-batch 8] [--iterations 6]

The bare loop calls the module's own ``training_iteration`` with plain ``backward``/``step`` (see
common.BareLoopMixin); the Trainer run adds what a real run has: manual optimisation bookkeeping,
logging every 10 steps to CSV, the sampler, callbacks. Both are timed over the same iterations after
warm-up, as the median time per iteration.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BareLoopMixin, machine  # noqa: E402

from dctnet.ccn.module import CCNModule  # noqa: E402
from dctnet.config import (  # noqa: E402
    CCNStageConfig,
    FacePerceptionConfig,
    GemConfig,
    StyleGANConfig,
    TTNConfig,
    TTNLossConfig,
    config_node,
)
from dctnet.precision import has_bf16_units  # noqa: E402
from dctnet.ttn.module import TTNModule  # noqa: E402


class _SameBatch(Dataset):
    """The same batch every time, so both loops see identical work."""

    def __init__(self, batch: dict[str, torch.Tensor], length: int) -> None:
        self.batch, self.length = batch, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.batch


class _Clock(pl.Callback):
    def __init__(self) -> None:
        self.stamps: list[float] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.stamps.append(time.perf_counter())


def _median_interval(stamps: list[float], warmup: int) -> float:
    return statistics.median(b - a for a, b in zip(stamps[warmup:], stamps[warmup + 1:]))


def in_trainer(module: pl.LightningModule, batch: dict[str, torch.Tensor], iterations: int, warmup: int,
               precision: str = "32-true") -> float:
    clock = _Clock()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = pl.Trainer(max_steps=2 * (iterations + warmup + 1), accelerator="auto", devices=1, precision=precision,
                             logger=pl.loggers.CSVLogger(tmp), log_every_n_steps=10, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False, callbacks=[clock])
        trainer.fit(module, DataLoader(_SameBatch(batch, 10**6), batch_size=None))
    return _median_interval(clock.stamps, warmup)


def bare(module: BareLoopMixin, batch: dict[str, torch.Tensor], iterations: int, warmup: int, start: int) -> float:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    module.to(device).train()
    batch = {k: v.to(device) for k, v in batch.items()}
    module.setup_bare(start)
    stamps = []
    for k in range(iterations + warmup + 1):
        module._iteration = start + k
        module.training_iteration(batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())
    return _median_interval(stamps, warmup)


class _BareTTN(BareLoopMixin, TTNModule):
    pass


class _BareCCN(BareLoopMixin, CCNModule):
    pass


def data_rate(size: int, workers: int, images: int = 256) -> float:
    """Decoded + GEM-augmented images/s of the training data module (both domains count)."""
    from dctnet.data.datamodule import GANDataModule, loader_options
    from dctnet.data.synthetic import generate_dataset

    with tempfile.TemporaryDirectory() as tmp:
        root = generate_dataset(tmp, size=size, photos=64, cartoons=64, test=0)
        dm = GANDataModule({"photo": str(root / "photos"), "cartoon": str(root / "cartoons")}, size, 8, seed=0,
                           total_iterations=10**9, gem=config_node("data.gem", GemConfig), **loader_options(num_workers=workers))
        loader = iter(dm.train_dataloader())
        next(loader)
        start, seen = time.perf_counter(), 0
        while seen < images:
            seen += 2 * len(next(loader)["photo"])
        rate = seen / (time.perf_counter() - start)
        del loader
    return rate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ttn-size", type=int, default=256)
    parser.add_argument("--ttn-batch", type=int, default=4)
    parser.add_argument("--ccn-size", type=int, default=64)
    parser.add_argument("--ccn-batch", type=int, default=8)
    parser.add_argument("--ccn-channel-max", type=int, default=128,
                        help="StyleGAN2 width cap (512 = config-f; smaller keeps this benchmark to minutes on CPU)")
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    print(machine())
    warmup = 2
    n, s = args.ttn_batch, args.ttn_size
    ttn_batch = {"photo": torch.rand(n, 3, s, s) * 2 - 1, "cartoon": torch.rand(n, 3, s, s) * 2 - 1}
    loss = config_node("ttn.loss", TTNLossConfig, vgg_pretrained=False, face=FacePerceptionConfig("none", 0.0))
    ttn_args = (config_node("ttn", TTNConfig, loss=loss, lr_g=2e-4, lr_d=2e-4, batch_size=n, ema_half_life_kimg=10.0),)
    with tempfile.TemporaryDirectory() as out:
        torch.manual_seed(0)
        t_bare = bare(_BareTTN(*ttn_args, out, 0), ttn_batch, args.iterations, warmup, start=0)
        torch.manual_seed(0)
        t_trainer = in_trainer(TTNModule(*ttn_args, out, 0), ttn_batch, args.iterations, warmup)
    print(f"stage 2, {s}px batch {n}: bare loop {t_bare * 1000:.0f} ms/iteration, Trainer {t_trainer * 1000:.0f} ms, "
          f"overhead {100 * (t_trainer / t_bare - 1):+.1f}%", flush=True)
    if has_bf16_units("auto"):  # trainer.precision=auto picks bf16-mixed here (dctnet/precision.py)
        with tempfile.TemporaryDirectory() as out:
            torch.manual_seed(0)
            t_bf16 = in_trainer(TTNModule(*ttn_args, out, 0), ttn_batch, args.iterations, warmup, "bf16-mixed")
        print(f"stage 2, {s}px batch {n}, Trainer bf16-mixed: {t_bf16 * 1000:.0f} ms/iteration, "
              f"{t_trainer / t_bf16:.2f}x the fp32 iteration rate", flush=True)
    else:
        print("stage 2 bf16-mixed: not measured (no bf16 units: AVX-512 bf16, AMX or a bf16 GPU)", flush=True)

    size, b = args.ccn_size, args.ccn_batch
    model = config_node("ccn.model", StyleGANConfig, size=size, style_dim=512, n_mlp=8, channel_multiplier=2,
                        channel_max=args.ccn_channel_max)
    stage = config_node("ccn.pretrain", CCNStageConfig, batch_size=b)
    ccn_batch = {"image": torch.randn(b, 3, size, size)}
    iterations = max(args.iterations, stage.r1_every)  # one lazy-R1 period, so regularisation is amortised alike
    with tempfile.TemporaryDirectory() as out:
        torch.manual_seed(0)
        c_bare = bare(_BareCCN(model, stage, "pretrain", out, 0), ccn_batch, iterations, warmup, start=0)
        torch.manual_seed(0)
        c_trainer = in_trainer(CCNModule(model, stage, "pretrain", out, 0), ccn_batch, iterations, warmup)
    print(f"stage 1, {size}px batch {b} (channel cap {args.ccn_channel_max}): bare loop {c_bare * 1000:.0f} ms/iteration, Trainer {c_trainer * 1000:.0f} ms, "
          f"overhead {100 * (c_trainer / c_bare - 1):+.1f}%", flush=True)

    rate = data_rate(s, args.workers)
    consumed = 2 * n / t_trainer  # photos + cartoons per second at the stage-2 step rate
    print(f"data pipeline (decode + GEM, {s}px, {args.workers} workers): {rate:.0f} images/s; stage 2 consumes "
          f"{consumed:.1f} images/s -> data is {rate / consumed:.0f}x faster than the step")


if __name__ == "__main__":
    main()
