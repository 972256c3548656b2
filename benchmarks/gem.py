"""GEM throughput: decoded + augmented images per second at 256 px with 0 and 2 loader workers.

    python benchmarks/gem.py [--images 400] [--size 256]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine  # noqa: E402

from dctnet.config import GemConfig, config_node  # noqa: E402
from dctnet.data.datamodule import GANDataModule, loader_options  # noqa: E402
from dctnet.data.synthetic import generate_dataset  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        root = generate_dataset(tmp, size=args.size, photos=64, cartoons=64, test=0)
        for workers in (0, 2):
            for cache in (False, True):
                dm = GANDataModule({"photo": str(root / "photos"), "cartoon": str(root / "cartoons")}, args.size, 8,
                                   seed=0, total_iterations=10**9, gem=config_node("data.gem", GemConfig),
                                   **loader_options(num_workers=workers, cache=cache))
                loader = iter(dm.train_dataloader())
                next(loader)
                start, images = time.perf_counter(), 0
                while images < args.images:
                    batch = next(loader)
                    images += 2 * len(batch["photo"])  # both domains are decoded and augmented
                rate = images / (time.perf_counter() - start)
                del loader  # stop persistent workers before the temporary folder goes away
                print(f"GEM {args.size}px workers={workers} cache={cache}: {rate:8.1f} images/s")


if __name__ == "__main__":
    main()
