"""Reduced precision on this CPU: the TTN at 512 px in fp32 (ONNX Runtime, torch) and bf16 (torch autocast),
with parity against fp32 for a trained model, and the bf16/fp32 matmul peaks. Prints figures only.

    python benchmarks/precision.py [--model outputs/demo/ttn/ttn.safetensors] [--size 512]

Without --model (or if the file is absent) a random-weight TTN is used and the output says so: parity on a
trained model is the figure that matters (random weights make near-constant outputs).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import skimage.data
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import best_time, machine  # noqa: E402

from dctnet.checkpoints import save_model  # noqa: E402
from dctnet.data.decode import to_tensor  # noqa: E402
from dctnet.inference.backends import load_backend  # noqa: E402
from dctnet.inference.precision import parity  # noqa: E402
from dctnet.models.unet import TTN  # noqa: E402


def matmul_peak(dtype: torch.dtype, n: int = 2048) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    return 2 * n**3 / best_time(lambda: a @ b) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=str(ROOT / "outputs" / "demo" / "ttn" / "ttn.safetensors"))
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    print(machine())
    print(f"matmul peak: fp32 {matmul_peak(torch.float32):.0f} GFLOP/s, bf16 {matmul_peak(torch.bfloat16):.0f} GFLOP/s")
    model = Path(args.model)
    temporary = tempfile.TemporaryDirectory()
    if not model.is_file():
        torch.manual_seed(0)
        ttn = TTN()
        model = save_model(Path(temporary.name) / "ttn.safetensors", ttn.network.state_dict(), "ttn", ttn.arch())
        print("model: random-weight official TTN (no trained model found: parity figures are not meaningful)")
    else:
        print(f"model: {model} (trained)")
    photo = cv2.resize(skimage.data.astronaut(), (args.size, args.size), interpolation=cv2.INTER_AREA)
    batch = to_tensor(photo)[None]
    reference = load_backend(model, "torch", "cpu")(batch)
    rows = [("fp32 ONNX Runtime (previous default)", load_backend(model, "onnxruntime", "cpu")),
            ("fp32 torch channels_last", load_backend(model, "torch", "cpu")),
            ("bf16 torch autocast channels_last", load_backend(model, "torch", "cpu", precision="bf16")),
            ("int8 ONNX Runtime (quantised convolutions)", load_backend(model, "onnxruntime", "cpu", precision="int8"))]
    base = None
    for name, backend in rows:
        seconds = best_time(lambda: backend(batch), repeats=3, warmup=1)
        base = base or seconds
        psnr, equal = parity(reference, backend(batch))
        print(f"{name}: {1000 * seconds:.0f} ms per {args.size}px image, {base / seconds:.2f}x the first row, "
              f"PSNR {psnr:.1f} dB, {100 * equal:.2f} % of 8-bit pixels within one level of fp32 torch")
    auto = load_backend(model, "auto", "cpu", precision="auto")
    print(f"auto: {auto.name}")


if __name__ == "__main__":
    main()
