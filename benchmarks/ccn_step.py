"""Stage-1 iteration time (one D + one G update, lazy R1 and path length amortised) and peak memory.

    python benchmarks/ccn_step.py [--sizes 64 256] [--batch 8]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BareLoopMixin, machine, peak_rss_mb  # noqa: E402

from dctnet.ccn.module import CCNModule  # noqa: E402
from dctnet.config import CCNStageConfig, StyleGANConfig, config_node  # noqa: E402


class _Bare(BareLoopMixin, CCNModule):
    """The module's own training iteration without the Trainer."""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--channel-max", type=int, default=512)
    parser.add_argument("--iterations", type=int, default=None,
                        help="timed iterations (default: one lazy-R1 period, so regularisation is amortised as in "
                             "training; fewer, e.g. 2 at 256 px on CPU, skip the lazy R1/path-length steps and "
                             "under-estimate)")
    args = parser.parse_args()
    print(machine())
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    for size in args.sizes:
        model = config_node("ccn.model", StyleGANConfig, size=size, style_dim=512, n_mlp=8, channel_multiplier=2,
                            channel_max=args.channel_max)
        stage = config_node("ccn.pretrain", CCNStageConfig, batch_size=args.batch)
        module = _Bare(model, stage, "pretrain", "unused", 0).to(device)
        module.setup_bare()
        batch = {"image": torch.randn(args.batch, 3, size, size, device=device)}
        counter = iter(range(10**9))

        def step() -> None:
            module._iteration = next(counter)
            module.training_iteration(batch)
            if device.type == "cuda":
                torch.cuda.synchronize()

        # one R1 period (16 iterations) so lazy regularisation is amortised as in training
        import time

        step()
        iterations = args.iterations or stage.r1_every
        start = time.perf_counter()
        for _ in range(iterations):
            step()
        seconds = (time.perf_counter() - start) / iterations
        memory = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else peak_rss_mb()
        print(f"CCN {size}px batch {args.batch} on {device}: {seconds * 1000:8.1f} ms/iteration (mean over {iterations} iterations"
              f"{', one R1 period' if iterations == stage.r1_every else ', lazy regularisers not included'}), "
              f"peak memory {memory:.0f} MB")


if __name__ == "__main__":
    main()
