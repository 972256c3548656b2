"""Independent training runs side by side on one CPU machine: one process per run, the cores shared out.

Small GAN runs do not use two cores well: on a 2-core Xeon with AMX a 64 px TTN iteration (batch 8) ran at
about 2.9 iterations/s on one thread and 2.6-3.0 on two. Two learning-benchmark TTN runs of 300 iterations took
123 s side by side against 167 s one after another, start-up included (1.36x; `python benchmarks/jobs.py`).
The learning benchmark's runs are stage 1, three TTNs (two read stage 1's samples), CycleGAN and Toonify (which
reads stage 1's generators); ``run_jobs`` runs them ``workers`` at a time, each as soon as the runs it reads are
done, so stage 1 trains beside CycleGAN and ``ccn_none`` rather than alone. Each is a plain function call in a
fresh (spawned) process: nothing is shared but the files each run writes in its own folder. On a GPU the runs
stay sequential.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Collection
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

import torch

log = logging.getLogger(__name__)

Job = tuple[Callable[..., Any], tuple[Any, ...]]


def run_jobs(jobs: dict[str, Job], workers: int = 1, after: dict[str, Collection[str]] | None = None) -> dict[str, Any]:
    """``{name: fn(*args)}`` for ``jobs = {name: (fn, args)}``, ``workers`` processes at a time (1: in this process).

    ``after[name]``: the jobs that must have finished before ``name`` starts (stage 1 before the TTNs that read its
    samples). Whenever a worker is free it takes the first job, in ``jobs`` order, whose dependencies are done: list
    the longest runs first. ``fn`` and ``args`` must be picklable (module-level functions, configs). The first
    failure is raised; runs not yet started are then dropped."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    after = {name: set(needs) for name, needs in (after or {}).items()}
    unknown = {need for needs in after.values() for need in needs} - set(jobs)
    if unknown or set(after) - set(jobs):
        raise ValueError(f"job dependencies name unknown jobs: {sorted(unknown | (set(after) - set(jobs)))}")
    pending, done = dict(jobs), {}

    def next_ready() -> str | None:
        return next((name for name in pending if after.get(name, set()) <= done.keys()), None)

    def stuck() -> ValueError:
        return ValueError(f"job dependencies form a cycle: {sorted(pending)} can never start")

    start = time.time()
    if workers == 1 or len(jobs) < 2 or torch.cuda.is_available():
        if workers > 1 and len(jobs) > 1:
            log.info("a GPU is present: the %d runs go one after another on it", len(jobs))
        while pending:
            name = next_ready()
            if name is None:
                raise stuck()
            fn, args = pending.pop(name)
            done[name] = fn(*args)
        return {name: done[name] for name in jobs}
    threads = threads_per_worker(workers)
    log.info("%d runs, %d at a time, %d thread(s) each: %s", len(jobs), workers, threads, ", ".join(jobs))
    context = multiprocessing.get_context("spawn")  # a fork of a process with torch threads running is unsafe
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                             initargs=(threads, logging.getLogger().getEffectiveLevel())) as pool:
        running: dict[Future, str] = {}
        while pending or running:
            # submit only as many as there are workers: a run that becomes ready later is not queued behind others
            while len(running) < workers and (name := next_ready()) is not None:
                fn, args = pending.pop(name)
                running[pool.submit(fn, *args)] = name
            if not running:
                raise stuck()
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                name = running.pop(future)
                done[name] = future.result()  # the first failure: the with block waits for the runs still going
                log.info("%s done after %.0f s", name, time.time() - start)
    return {name: done[name] for name in jobs}


def threads_per_worker(workers: int) -> int:
    """Each of ``workers`` processes' share of this machine's cores (at least one), so they do not oversubscribe."""
    return max(1, (os.cpu_count() or 1) // workers)


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
