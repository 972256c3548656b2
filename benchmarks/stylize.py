"""`dctnet stylize` speed and memory through the real Stylizer (uint8 in, uint8 out, padding, tiling).

Part 1: images/s and added peak memory at 256, 512 and 1024 px for eager NCHW PyTorch, channels_last (the
torch default), torch.compile and ONNX Runtime, printed side by side as ratios to eager.
Part 2: tiled inference: added peak memory and seconds against image size (up to 4096 x 4096), tiled and
whole, showing that tiles bound memory.

    python benchmarks/stylize.py [--sizes 256 512 1024] [--tiled-sizes 1024 2048 4096] [--tile 512]

Each measurement runs in its own process (see common.run_isolated).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import best_time, current_rss_mb, machine, peak_rss_mb, reset_peak_rss, run_isolated  # noqa: E402

from dctnet.checkpoints import save_model  # noqa: E402
from dctnet.inference.backends import TorchBackend, load_backend, load_ttn  # noqa: E402
from dctnet.inference.stylize import Stylizer  # noqa: E402
from dctnet.models.unet import UNetGenerator  # noqa: E402

BACKENDS = ("eager", "channels_last", "compile", "onnxruntime")


def _model(folder: Path) -> Path:
    torch.manual_seed(0)
    net = UNetGenerator()
    arch = {"base_channels": 32, "num_residual": 4, "num_downsamples": 2, "output_guided_filter": True}
    return save_model(folder / "ttn.safetensors", net.state_dict(), "ttn", arch)


def _stylizer(backend: str, model: Path, tile: int) -> Stylizer:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if backend == "onnxruntime":
        return Stylizer(load_backend(model, "onnxruntime", device), tile=tile)
    runtime = TorchBackend(load_ttn(model), device, channels_last=backend != "eager")
    if backend == "compile":
        runtime.ttn.network = torch.compile(runtime.ttn.network)
    return Stylizer(runtime, tile=tile)


def worker(backend: str, size: int, tile: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        stylizer = _stylizer(backend, _model(Path(tmp)), tile)
        image = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
        stylizer(image)  # warm-up (and compilation)
        baseline = current_rss_mb()
        reset_peak_rss()
        seconds = best_time(lambda: stylizer(image), repeats=3 if size <= 1024 else 1, warmup=0)
        return {"seconds": seconds, "peak_mb": peak_rss_mb() - baseline}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS))
    parser.add_argument("--tiled-sizes", type=int, nargs="+", default=[1024, 2048, 4096])
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--worker", nargs=3, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        import json

        print(json.dumps(worker(args.worker[0], int(args.worker[1]), int(args.worker[2]))))
        return
    print(machine())
    print(f"{'backend':14} {'size':>5} {'ms/image':>9} {'images/s':>9} {'x eager':>8} {'+peak MB':>9}")
    for size in args.sizes:
        eager = None
        for backend in args.backends:
            figures = run_isolated(__file__, [backend, str(size), str(10**6)])
            if isinstance(figures, str):
                print(f"{backend:14} {size:5d}   not available: {figures}")
                continue
            eager = eager or (figures["seconds"] if backend == "eager" else None)
            ratio = f"{eager / figures['seconds']:7.2f}x" if eager else "      -"
            print(f"{backend:14} {size:5d} {figures['seconds'] * 1000:9.1f} {1 / figures['seconds']:9.2f} {ratio} "
                  f"{figures['peak_mb']:9.0f}", flush=True)
    print(f"\ntiled inference (tile {args.tile}, overlap 64, default torch backend) vs whole image:")
    print(f"{'image':>11} {'mode':>6} {'s/image':>8} {'+peak MB':>9}")
    for size in args.tiled_sizes:
        for mode, tile in (("tiled", args.tile), ("whole", 10**6)):
            if mode == "whole" and size > 2048:
                print(f"{size:5d}x{size:<5d} {mode:>6}   skipped (tens of GB: why tiles exist)")
                continue
            figures = run_isolated(__file__, ["channels_last", str(size), str(tile)])
            if isinstance(figures, str):
                print(f"{size:5d}x{size:<5d} {mode:>6}   failed: {figures}")
                continue
            print(f"{size:5d}x{size:<5d} {mode:>6} {figures['seconds']:8.2f} {figures['peak_mb']:9.0f}", flush=True)


if __name__ == "__main__":
    main()
