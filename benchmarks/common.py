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
    from dctnet.precision import cpu_features  # CPUs differ: every figure is printed beside the CPU's features

    features = ", ".join(cpu_features()) or "none of avx2/avx512/amx"
    return (f"{time.strftime('%Y-%m-%d')} | {cpu} | CPU features: {features} | torch {torch.__version__} | "
            f"threads {torch.get_num_threads()}")


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
    """Peak resident memory of this process (MB): since :func:`reset_peak_rss` on Linux, else since start."""
    try:
        with open("/proc/self/status") as handle:
            return next(int(line.split()[1]) for line in handle if line.startswith("VmHWM")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    try:
        with open("/proc/self/status") as handle:
            return next(int(line.split()[1]) for line in handle if line.startswith("VmRSS")) / 1024
    except (OSError, StopIteration):
        return float("nan")


def reset_peak_rss() -> None:
    """Start a new peak-memory window (Linux: writing 5 to clear_refs resets VmHWM to the current RSS)."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass


def run_isolated(script: str, args: list[str]) -> dict | str:
    """Run ``script --worker ARGS`` in a fresh process (so its memory peak is its own); its last JSON line,
    or the reason it failed."""
    import json
    import subprocess
    import sys

    result = subprocess.run([sys.executable, script, "--worker", *args], capture_output=True, text=True)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        return (result.stderr.strip().splitlines() or ["failed"])[-1][:100]
    return json.loads(lines[-1])


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

    def scale_learning_rates(self, iteration: int) -> None:
        """No Trainer to read the optimisers from: the configured learning rates stay (schedules are not timed)."""

    @property
    def iteration(self) -> int:
        return self._iteration
