"""Independent runs side by side (dctnet/jobs.py): each in its own process with its share of the cores."""

from __future__ import annotations

import os

import pytest
import torch

from dctnet.jobs import run_jobs, workers_option


def test_runs_go_to_their_own_processes_with_a_share_of_the_cores() -> None:
    jobs = {"a": (os.getpid, ()), "b": (os.getpid, ()), "threads": (torch.get_num_threads, ())}
    together = run_jobs(jobs, workers=2)
    assert set(together) == {"a", "b", "threads"}
    assert os.getpid() not in (together["a"], together["b"])
    assert together["threads"] == max(1, (os.cpu_count() or 1) // 2)
    alone = run_jobs(jobs, workers=1)  # in this process, in order
    assert alone["a"] == alone["b"] == os.getpid() and alone["threads"] == torch.get_num_threads()


def test_a_failing_run_raises_in_the_caller() -> None:
    with pytest.raises(ValueError, match="invalid literal"):
        run_jobs({"ok": (abs, (-1,)), "bad": (int, ("x",))}, workers=2)
    with pytest.raises(ValueError, match="at least 1"):
        run_jobs({"ok": (abs, (-1,))}, workers=0)


def test_the_jobs_option_is_taken_out_of_the_hydra_overrides() -> None:
    """`make demo` and benchmarks/learning.py pass the rest to Hydra, which would reject ``--jobs``."""
    assert workers_option(["ttn.steps=5", "--jobs=3", "seed=1"]) == (3, ["ttn.steps=5", "seed=1"])
    assert workers_option(["seed=1"]) == (min(2, os.cpu_count() or 1), ["seed=1"])
    assert workers_option(["seed=1"], default=1) == (1, ["seed=1"])
