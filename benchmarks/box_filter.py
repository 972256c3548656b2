"""The guided filter's box filter: running sums (dctnet.losses.representations.box_filter) against the separable
stride-1 pooling it replaced, forward and forward + backward, at a TTN training batch and at inference sizes.

    python benchmarks/box_filter.py [--radius 5] [--batch 8] [--sizes 64 256 1024]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import best_time, machine  # noqa: E402

from dctnet.losses.representations import box_filter  # noqa: E402


def pooled_box_filter(x: torch.Tensor, radius: int) -> torch.Tensor:
    """The previous implementation: a row mean then a column mean by stride-1 average pooling."""
    padded = F.pad(x, [radius] * 4, mode="reflect")
    rows = F.avg_pool2d(padded, (1, 2 * radius + 1), stride=1)
    return F.avg_pool2d(rows, (2 * radius + 1, 1), stride=1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--radius", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 1024])
    args = parser.parse_args()
    print(machine())
    for size in args.sizes:
        batch = args.batch if size <= 256 else 1
        x = torch.rand(batch, 3, size, size, requires_grad=True)
        gap = (box_filter(x, args.radius) - pooled_box_filter(x, args.radius)).abs().max().item()
        for name, fn in (("running sums", box_filter), ("pooling", pooled_box_filter)):
            forward = best_time(lambda: fn(x.detach(), args.radius))
            both = best_time(lambda: fn(x, args.radius).sum().backward())
            print(f"{size:5d} px batch {batch} r={args.radius} {name:12s}: forward {forward * 1000:7.2f} ms, "
                  f"forward+backward {both * 1000:7.2f} ms")
        print(f"{size:5d} px: largest difference {gap:.1e}")


if __name__ == "__main__":
    main()
