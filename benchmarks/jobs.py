"""Independent runs one after another (all threads each) against side by side (dctnet/jobs.py, the cores shared
out): wall time of two learning-benchmark TTN runs (64 px, batch 8) on synthetic data.

    python benchmarks/jobs.py [--steps 300] [--runs 2] [--workers 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine  # noqa: E402

from dctnet.config import register_configs  # noqa: E402
from dctnet.data.synthetic import generate_dataset  # noqa: E402
from dctnet.demo import _config  # noqa: E402
from dctnet.jobs import run_jobs  # noqa: E402
from dctnet.ttn.train import train_ttn  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    print(machine())
    register_configs()
    with tempfile.TemporaryDirectory() as tmp:
        data = generate_dataset(Path(tmp) / "data", size=64, photos=200, cartoons=100, test=8)
        for workers in (1, args.workers):
            jobs = {f"run{i}": (train_ttn, (_config([f"data.root={data}", "data.synthetic.generate=false",
                                                     f"run_dir={tmp}/w{workers}/run{i}", f"ttn.steps={args.steps}",
                                                     "trainer.enable_progress_bar=false", "logger=csv",
                                                     f"seed={i}"], "learning"),))
                    for i in range(args.runs)}
            start = time.perf_counter()
            run_jobs(jobs, workers)
            seconds = time.perf_counter() - start
            print(f"{args.runs} TTN runs x {args.steps} iterations, {workers} at a time: {seconds:.0f} s wall "
                  f"({args.runs * args.steps / seconds:.2f} iterations/s in all, start-up included)")


if __name__ == "__main__":
    main()
