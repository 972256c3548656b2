"""Training numerics: ``trainer.precision=auto`` and the fp32 islands inside bf16-mixed training.

``auto`` picks Lightning's ``bf16-mixed`` where the device has bf16 arithmetic (a CUDA GPU that supports it;
a CPU with AVX-512 bf16 or AMX), else ``32-true``: on a CPU without those units bf16 is emulated and slower.
"""

from __future__ import annotations

import contextlib
from functools import lru_cache
from typing import Iterator

import torch

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    try:
        with open("/proc/cpuinfo") as handle:
            line = next(line for line in handle if line.startswith("flags"))
    except (OSError, StopIteration):
        return frozenset()
    return frozenset(line.split(":", 1)[1].split())


FEATURES = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8")


def cpu_features() -> tuple[str, ...]:
    """The CPU features that decide reduced-precision speed (AVX-512 bf16/VNNI, AMX) that this CPU has."""
    flags = cpu_flags()
    return tuple(feature for feature in FEATURES if feature in flags)


def has_bf16_units(accelerator: str) -> bool:
    """Whether bf16 runs natively on the device ``accelerator`` (cpu, gpu/cuda, auto) resolves to."""
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return any(flag in cpu_flags() for flag in BF16_CPU_FLAGS)


def resolve_precision(precision: str, accelerator: str) -> str:
    """``trainer.precision`` as Lightning takes it: ``auto`` becomes ``bf16-mixed`` or ``32-true``."""
    if precision != "auto":
        return precision
    return "bf16-mixed" if has_bf16_units(accelerator) else "32-true"


@contextlib.contextmanager
def full_precision(enabled: bool, device: torch.device) -> Iterator[None]:
    """Autocast off inside the block when ``enabled`` (a penalty or filter bf16 would break)."""
    if not enabled:
        yield
        return
    with torch.autocast(device.type, enabled=False):
        yield
