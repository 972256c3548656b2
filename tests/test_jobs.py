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


def test_a_run_starts_only_once_the_runs_it_reads_are_done(tmp_path) -> None:
    """Stage 1 before the TTNs that read its samples: side by side, a run waits for its dependencies (the reader
    would find no file if it started with the writer), and runs without any start at once beside them."""
    import subprocess

    flag = tmp_path / "written"
    writer = (subprocess.run, (["sh", "-c", f"sleep 1; touch {flag}"],))
    reader = (os.path.exists, (str(flag),))
    done = run_jobs({"reader": reader, "writer": writer, "free": (os.path.exists, (str(flag),))}, workers=2,
                    after={"reader": ["writer"]})
    assert done["reader"] is True, "the reader started before the writer finished"
    assert done["free"] is False, "a run without dependencies waited for one"
    assert list(done) == ["reader", "writer", "free"]
    flag.unlink()
    order = []
    run_jobs({"b": (order.append, ("b",)), "a": (order.append, ("a",)), "c": (order.append, ("c",))}, workers=1,
             after={"b": ["a"]})
    assert order == ["a", "b", "c"], "in turn: the first run whose dependencies are done, in the given order"


def test_dependencies_on_unknown_runs_or_in_a_cycle_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown jobs"):
        run_jobs({"a": (abs, (-1,))}, after={"a": ["missing"]})
    for workers in (1, 2):
        with pytest.raises(ValueError, match="cycle"):
            run_jobs({"a": (abs, (-1,)), "b": (abs, (-2,))}, workers=workers, after={"a": ["b"], "b": ["a"]})


def test_the_jobs_option_is_taken_out_of_the_hydra_overrides() -> None:
    """`make demo` and benchmarks/learning.py pass the rest to Hydra, which would reject ``--jobs``."""
    assert workers_option(["ttn.steps=5", "--jobs=3", "seed=1"]) == (3, ["ttn.steps=5", "seed=1"])
    assert workers_option(["seed=1"]) == (min(2, os.cpu_count() or 1), ["seed=1"])
    assert workers_option(["seed=1"], default=1) == (1, ["seed=1"])
