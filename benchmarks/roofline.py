"""TTN inference against the machine's own limit, measured in the same run.

1. Peak fp32 throughput of this machine: a large matmul and a large channels_last 3x3 convolution (best of
   several runs), in GFLOP/s.
2. The TTN (official U-Net + output guided filter) at each size and batch in each backend: eager NCHW, eager
   channels_last, torch.compile, TorchScript (frozen), ONNX Runtime; ms/image, images/s, achieved GFLOP/s
   (FLOPs counted by torch.utils.flop_counter from the layer shapes), the fraction of the matmul peak, and
   the memory the forward passes add to the process (peak resident set during them minus the resident set
   before them; CUDA: peak allocated). On CUDA the eager rows also run under fp16 and bf16 autocast, on a
   CPU with bf16 units (AVX-512 bf16, AMX) under bf16 autocast; each row is read against the matmul peak
   of its own numerics (bf16 rows against the bf16 peak).

    python benchmarks/roofline.py [--sizes 256 512 1024] [--batches 1 8] [--backends eager channels_last ...]

Each (backend, size, batch) runs in its own subprocess so its peak memory is its own.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import best_time, current_rss_mb, machine, peak_rss_mb, reset_peak_rss, run_isolated  # noqa: E402

from dctnet.precision import has_bf16_units  # noqa: E402
from dctnet.models.unet import TTN, UNetGenerator  # noqa: E402

BACKENDS = ("eager", "channels_last", "compile", "torchscript", "onnxruntime")
CPU_BF16_BACKENDS = ("bf16",)  # bf16 autocast + channels_last, on CPUs with AVX-512 bf16 or AMX
CUDA_BACKENDS = ("eager", "channels_last", "fp16", "bf16", "compile")


def matmul_gflops(device: torch.device, dtype: torch.dtype) -> float:
    """Best-of-5 GFLOP/s of an n x n matmul in ``dtype`` (n = 4096 on CUDA, 2048 on CPU)."""
    n = 4096 if device.type == "cuda" else 2048
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def matmul() -> None:
        a @ b
        sync()

    with torch.inference_mode():
        return 2 * n**3 / best_time(matmul, repeats=5) / 1e9


def measure_peak_gflops(device: torch.device) -> dict[str, float]:
    """Peaks per numerics: fp32 matmul and 64->64 3x3 conv on 1 x 256 x 256 (channels_last); bf16 (and fp16 on
    CUDA) matmul where the device has the units, so each row is read against the peak of its own numerics."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    peaks = {"matmul": matmul_gflops(device, torch.float32)}
    if has_bf16_units("auto" if device.type == "cuda" else "cpu"):
        peaks["matmul_bf16"] = matmul_gflops(device, torch.bfloat16)
    if device.type == "cuda":
        peaks["matmul_fp16"] = matmul_gflops(device, torch.float16)

    conv = torch.nn.Conv2d(64, 64, 3, padding=1).to(device, memory_format=torch.channels_last).eval()
    x = torch.randn(1, 64, 256, 256, device=device).to(memory_format=torch.channels_last)

    def convolve() -> None:
        conv(x)
        sync()

    with torch.inference_mode():
        peaks["conv3x3"] = 2 * 64 * 64 * 9 * 256 * 256 / best_time(convolve, repeats=5) / 1e9
    return peaks


def own_peak(backend: str, peak: dict[str, float]) -> float:
    """The matmul peak of the numerics ``backend`` computes in."""
    return {"bf16": peak.get("matmul_bf16"), "fp16": peak.get("matmul_fp16")}.get(backend) or peak["matmul"]


def ttn_gflop(size: int) -> float:
    """FLOPs of one TTN forward at ``size`` x ``size`` (convolutions and matmuls, 2 per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode

    network = UNetGenerator().eval()
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        network(torch.zeros(1, 3, size, size))
    return counter.get_total_flops() / 1e9


def _runner(backend: str, size: int, batch: int, device: torch.device, workdir: Path):
    """A callable running one forward of the whole TTN (network + guided filter) in ``backend``."""
    torch.manual_seed(0)
    module = TTN().eval().to(device)  # the official U-Net, its output guided filter and the clamp
    x = torch.rand(batch, 3, size, size, device=device) * 2 - 1
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if backend in ("channels_last", "compile", "fp16", "bf16"):
        module, x = module.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    if backend == "compile":
        module = torch.compile(module)
    if backend == "torchscript":
        with torch.inference_mode():
            module = torch.jit.optimize_for_inference(torch.jit.trace(module, x, check_trace=False))
    if backend == "onnxruntime":
        import onnxruntime

        path = workdir / "ttn.onnx"
        torch.onnx.export(module, (x,), str(path), input_names=["photo"], output_names=["cartoon"],
                          dynamic_axes={"photo": {0: "b", 2: "h", 3: "w"}}, opset_version=17, dynamo=False)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        providers = ["CUDAExecutionProvider"] if device.type == "cuda" else ["CPUExecutionProvider"]
        session = onnxruntime.InferenceSession(str(path), options, providers=providers)
        feed = {"photo": x.cpu().numpy()}
        return lambda: session.run(None, feed)
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(backend)

    def run() -> None:
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype or torch.float16, enabled=dtype is not None):
            module(x)
        sync()

    return run


def worker(backend: str, size: int, batch: int) -> dict[str, float]:
    """One measurement in this (fresh) process: best time and peak memory."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        run = _runner(backend, size, batch, device, Path(tmp))
        baseline = current_rss_mb()  # libraries, weights and the input batch, before any forward
        reset_peak_rss()
        repeats = 3 if size * size * batch <= 512 * 512 * 8 else 2
        seconds = best_time(run, repeats=repeats, warmup=1)
    if device.type == "cuda":
        return {"seconds": seconds, "peak_mb": torch.cuda.max_memory_allocated() / 2**20}
    return {"seconds": seconds, "peak_mb": peak_rss_mb() - baseline}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--backends", nargs="+", default=None)
    parser.add_argument("--worker", nargs=3, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        backend, size, batch = args.worker
        print(json.dumps(worker(backend, int(size), int(batch))))
        return
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cpu_backends = BACKENDS + (CPU_BF16_BACKENDS if has_bf16_units("cpu") else ())
    backends = args.backends or (CUDA_BACKENDS if device.type == "cuda" else cpu_backends)
    print(machine(), f"| device {device}")
    peak = measure_peak_gflops(device)
    print(f"measured peak fp32: matmul {peak['matmul']:.0f} GFLOP/s, channels_last 3x3 conv {peak['conv3x3']:.0f} GFLOP/s")
    reduced = [f"{name[7:]} matmul {value:.0f} GFLOP/s" for name, value in peak.items() if name.startswith("matmul_")]
    print("measured peak reduced precision: " + (", ".join(reduced) or "none (no bf16 units)"))
    print(f"{'backend':14} {'size':>5} {'batch':>5} {'ms/image':>9} {'images/s':>9} {'GFLOP/s':>8} "
          f"{'% own peak':>13} {'+peak MB':>8}   (% of the matmul peak of the row's numerics)")
    for size in args.sizes:
        gflop = ttn_gflop(size)
        for batch in args.batches:
            for backend in backends:
                figures = run_isolated(__file__, [backend, str(size), str(batch)])
                if isinstance(figures, str):
                    print(f"{backend:14} {size:5d} {batch:5d}   not available: {figures}")
                    continue
                per_image = figures["seconds"] / batch
                achieved = gflop / per_image
                print(f"{backend:14} {size:5d} {batch:5d} {per_image * 1000:9.1f} {1 / per_image:9.2f} {achieved:8.0f} "
                      f"{100 * achieved / own_peak(backend, peak):12.0f}% {figures['peak_mb']:8.0f}", flush=True)
        print(f"  ({size} px: {gflop:.1f} GFLOP per image)")


if __name__ == "__main__":
    main()
