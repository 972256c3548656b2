"""Independent training runs side by side on one CPU machine: one process per run, the cores shared out.

Small GAN runs do not use two cores well: on a 2-core Xeon with AMX a 64 px TTN iteration (batch 8) ran at
about 2.9 iterations/s on one thread and 2.6-3.0 on two. Two learning-benchmark TTN runs of 300 iterations took
123 s side by side against 167 s one after another, start-up included (1.36x; `python benchmarks/jobs.py`).
The learning benchmark trains four independent models after stage 1 (the full method's TTN, two ablations,
CycleGAN); ``run_jobs`` runs them ``workers`` at a time. Each is a plain function call in a fresh (spawned)
process: nothing is shared but the files each run writes in its own folder. On a GPU the runs stay sequential.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import torch

log = logging.getLogger(__name__)

Job = tuple[Callable[..., Any], tuple[Any, ...]]


def run_jobs(jobs: dict[str, Job], workers: int = 1) -> dict[str, Any]:
    """``{name: fn(*args)}`` for ``jobs = {name: (fn, args)}``, ``workers`` processes at a time (1: in this process,
    in order). ``fn`` and ``args`` must be picklable (module-level functions, configs). The first failure is raised."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if workers == 1 or len(jobs) < 2 or torch.cuda.is_available():
        if workers > 1 and len(jobs) > 1:
            log.info("a GPU is present: the %d runs go one after another on it", len(jobs))
        return {name: fn(*args) for name, (fn, args) in jobs.items()}
    threads = max(1, (os.cpu_count() or 1) // workers)
    log.info("%d runs, %d at a time, %d thread(s) each: %s", len(jobs), workers, threads, ", ".join(jobs))
    context = multiprocessing.get_context("spawn")  # a fork of a process with torch threads running is unsafe
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                             initargs=(threads, logging.getLogger().getEffectiveLevel())) as pool:
        futures = {name: pool.submit(fn, *args) for name, (fn, args) in jobs.items()}
        return {name: future.result() for name, future in futures.items()}


def workers_option(argv: list[str], default: int | None = None) -> tuple[int, list[str]]:
    """``--jobs=N`` taken out of a command line: (N, the other arguments). ``default`` (None: 2 on a CPU with 2+
    cores, the measured gain above) when absent; on a GPU ``run_jobs`` keeps the runs sequential whatever N is."""
    workers = min(2, os.cpu_count() or 1) if default is None else default
    rest = []
    for argument in argv:
        if argument.startswith("--jobs="):
            workers = int(argument.split("=", 1)[1])
        else:
            rest.append(argument)
    return workers, rest


def _start_worker(threads: int, level: int) -> None:
    """A worker's share of the cores, and its log lines on stderr as the parent's are."""
    torch.set_num_threads(threads)
    logging.basicConfig(level=level, format="%(asctime)s %(processName)s %(name)s: %(message)s")
