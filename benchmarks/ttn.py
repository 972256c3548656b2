"""Stage-2 figures: training iteration time (G + both discriminators + VGG content) and inference
images/s and peak memory of the official U-Net at 256, 512 and 1024 px.

    python benchmarks/ttn.py [--sizes 256 512 1024] [--train-batch 4]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BareLoopMixin, best_time, machine, peak_rss_mb  # noqa: E402

from dctnet.config import FacePerceptionConfig, TTNConfig, TTNLossConfig, config_node  # noqa: E402
from dctnet.ttn.module import TTNModule  # noqa: E402


class _Bare(BareLoopMixin, TTNModule):
    """The module's own training iteration without the Trainer."""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--train-batch", type=int, default=4)
    parser.add_argument("--train-size", type=int, default=256)
    args = parser.parse_args()
    print(machine())
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    loss = config_node("ttn.loss", TTNLossConfig, vgg_pretrained=False, face=FacePerceptionConfig("none", 0.0))
    recipe = config_node("ttn", TTNConfig, loss=loss, lr_g=2e-4, lr_d=2e-4, batch_size=args.train_batch)
    module = _Bare(recipe, tempfile.mkdtemp(), sample_every=10**9).to(device)
    module.setup_bare(iteration=10**6)  # past the warm-up
    n, s = args.train_batch, args.train_size
    batch = {"photo": torch.rand(n, 3, s, s, device=device) * 2 - 1, "cartoon": torch.rand(n, 3, s, s, device=device) * 2 - 1}
    seconds = best_time(lambda: module.training_iteration(batch), repeats=3, warmup=1)
    print(f"TTN train {s}px batch {n}: {seconds * 1000:.0f} ms/iteration, {n / seconds:.1f} images/s")
    network = module.generator_ema.eval()  # the whole TTN: U-Net, output filter, clamp
    for size in args.sizes:
        x = torch.rand(1, 3, size, size, device=device) * 2 - 1
        with torch.inference_mode():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            seconds = best_time(lambda: network(x), repeats=3, warmup=1)
        # CUDA: peak allocated by this size; CPU: peak RSS of the process so far (sizes run in ascending order)
        memory = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else peak_rss_mb()
        print(f"TTN inference {size}px batch 1 on {device}: {seconds * 1000:8.1f} ms, {1 / seconds:6.2f} images/s, "
              f"peak {'CUDA allocated' if device.type == 'cuda' else 'process RSS'} {memory:.0f} MB")


if __name__ == "__main__":
    main()
