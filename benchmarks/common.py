"""Small helpers shared by the benchmark scripts: timing and peak memory, printed, never asserted."""

from __future__ import annotations

import platform
import resource
import time
from collections.abc import Callable

import torch


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{time.strftime('%Y-%m-%d')} | {cpu} | torch {torch.__version__} | threads {torch.get_num_threads()}"


def best_time(fn: Callable[[], object], repeats: int = 5, warmup: int = 2) -> float:
    """Best wall time of ``fn`` in seconds over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class BareLoopMixin:
    """Runs a GAN module's own ``training_iteration`` outside Lightning (for framework-overhead figures):
    optimisers come from ``configure_optimizers``, backward is plain, the iteration counter is set by hand."""

    def setup_bare(self, iteration: int = 0) -> None:
        self._opts = self.configure_optimizers()
        self._iteration = iteration

    def optimizers(self):
        return self._opts

    def manual_backward(self, loss: torch.Tensor, *args, **kwargs) -> None:
        loss.backward()

    @property
    def iteration(self) -> int:
        return self._iteration
