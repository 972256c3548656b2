"""``--precision auto``: the fastest numerics whose output matches fp32 on this machine, measured, not assumed.

CPUs differ (AMX bf16 tiles, AVX-512 bf16, neither) and so does the winner. For the loaded model, ``auto``
runs a fixed probe image through the fp32 default backend and through each reduced-precision candidate
(torch bf16 autocast; ONNX Runtime on the int8-quantised convolutions, dctnet.inference.quantize), keeps the
fastest candidate whose output passes the parity check (PSNR >= 40 dB against fp32 and >= 99 % of 8-bit pixels
within one level of it), and falls back to fp32 otherwise. The decision and its figures are cached per model,
machine, torch version and candidate list, and printed.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch

from dctnet.atomic import write_text_atomic

log = logging.getLogger(__name__)
PRECISIONS = ("auto", "fp32", "bf16", "int8")
PSNR_MIN = 40.0  # dB, on [0, 255] images
EQUAL_MIN = 0.99  # share of uint8 pixels within one level of the fp32 output (bf16 rounds many by exactly one)
PROBE_SIZE = 256


def cache_file() -> Path:
    return Path(os.path.expanduser(os.getenv("DCTNET_CACHE", "~/.cache/dctnet"))) / "precision.json"


def cpu_features() -> str:
    """The CPU features that decide reduced-precision speed (AMX, AVX-512 bf16/VNNI), for cache keys and reports."""
    from dctnet.precision import cpu_features as features, cpu_flags

    if not cpu_flags():
        return platform.processor() or "unknown"
    return ",".join(features()) or "no-avx512"


def probe_batch(stride: int) -> torch.Tensor:
    """A real photo (scikit-image's astronaut) at PROBE_SIZE px: parity on natural content, not noise."""
    import cv2
    import skimage.data

    from dctnet.data.decode import to_tensor

    size = PROBE_SIZE // stride * stride
    return to_tensor(cv2.resize(skimage.data.astronaut(), (size, size), interpolation=cv2.INTER_AREA))[None]


def parity(reference: torch.Tensor, candidate: torch.Tensor) -> tuple[float, float]:
    """(PSNR in dB, share of uint8 pixels within one level) of ``candidate`` against ``reference`` ([-1, 1])."""
    to_uint8 = lambda t: ((t.float().clamp(-1, 1) + 1) * 127.5).round()  # noqa: E731
    a, b = to_uint8(reference), to_uint8(candidate)
    mse = float(((a - b) ** 2).mean())
    psnr = math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)
    return psnr, float(((a - b).abs() <= 1).float().mean())


def _seconds(backend: Callable[[torch.Tensor], torch.Tensor], batch: torch.Tensor, repeats: int = 3) -> float:
    backend(batch)  # warm-up (oneDNN picks kernels, ONNX Runtime plans)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        backend(batch)
        best = min(best, time.perf_counter() - start)
    return best


def choose(key: str, reference: tuple[str, Callable], candidates: dict[str, Callable],
           stride: int) -> tuple[str, dict]:
    """Name of the fastest candidate that passes parity with ``reference`` (else the reference's), and the figures."""
    cached = _read_cache().get(key)
    if cached is not None:
        return cached["choice"], cached["figures"]
    batch = probe_batch(stride)
    name, backend = reference
    expected = backend(batch)
    figures = {name: {"seconds": _seconds(backend, batch), "psnr": math.inf, "equal": 1.0, "passed": True}}
    for candidate, make in candidates.items():
        try:
            runner = make()
            psnr, equal = parity(expected, runner(batch))
            passed = psnr >= PSNR_MIN and equal >= EQUAL_MIN
            figures[candidate] = {"seconds": _seconds(runner, batch) if passed else None, "psnr": psnr,
                                  "equal": equal, "passed": passed}
        except RuntimeError as error:  # e.g. no bf16 kernels on this CPU (missing kernels raise a subclass)
            figures[candidate] = {"seconds": None, "psnr": None, "equal": None, "passed": False, "error": str(error)}
    passing = {n: f["seconds"] for n, f in figures.items() if f["passed"] and f["seconds"] is not None}
    choice = min(passing, key=passing.get)
    _write_cache(key, {"choice": choice, "figures": figures})
    return choice, figures


def describe(choice: str, figures: dict) -> str:
    """One line: what was chosen and why (speed against fp32, parity of each candidate)."""
    base = next(iter(figures))
    parts = []
    for name, f in figures.items():
        if name == base:
            continue
        if f["passed"]:
            parts.append(f"{name} {figures[base]['seconds'] / f['seconds']:.2f}x fp32 speed, PSNR {f['psnr']:.1f} dB, "
                         f"{100 * f['equal']:.1f} % pixels within one level")
        elif f.get("error"):
            parts.append(f"{name} unavailable ({f['error'][:80]})")
        else:
            failed = [f"PSNR {f['psnr']:.1f} dB < {PSNR_MIN:g}"] if f["psnr"] < PSNR_MIN else []
            failed += [f"{100 * f['equal']:.1f} % < {100 * EQUAL_MIN:.0f} % of pixels within one level"] \
                if f["equal"] < EQUAL_MIN else []
            parts.append(f"{name} failed parity ({' and '.join(failed)})")
    return f"--precision auto chose {choice} ({'; '.join(parts) or 'no candidate'})"


def _read_cache() -> dict:
    try:
        return json.loads(cache_file().read_text())
    except (OSError, ValueError):
        return {}


def _write_cache(key: str, value: dict) -> None:
    data = _read_cache()
    data[key] = value
    try:
        cache_file().parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(cache_file(), json.dumps(data, indent=1, default=str) + "\n")
    except OSError as error:  # a read-only cache only costs a re-measurement next time
        log.info("precision decision not cached (%s)", error)
