"""Scale: both stages under DDP on 2 CPU ranks, the SLURM launcher config, a local sweep, and a run
killed by a signal (as SLURM preemption does) that resumes to the weights of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import CONF, REPO, tiny_overrides
from hydra import compose, initialize_config_dir
from safetensors.torch import load_file

ENV = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1",
       "HYDRA_FULL_ERROR": "1"}


def _run(script: str, overrides: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, script, *overrides], cwd=REPO, env=ENV, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["ttn", "ccn"])
def test_ddp_on_two_cpu_ranks_keeps_generators_identical(stage: str, synthetic_root: Path, tmp_path: Path) -> None:
    overrides = tiny_overrides(synthetic_root, tmp_path) + [
        "trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu", "trainer.max_steps=4",
        "ccn.stages=[pretrain]", "ccn.pretrain.r1_every=2", "ccn.pretrain.path_every=2", f"hydra.run.dir={tmp_path}/hydra"]
    _run(f"train_{stage}.py", overrides)
    stage_dir = tmp_path / stage / ("pretrain" if stage == "ccn" else "")
    header = json.loads((stage_dir / f"{stage}.json").read_text())
    assert header["world_size"] == 2 and header["ranks_identical"] is True and header["iterations"] == 4
    assert [p.name for p in (stage_dir / "checkpoints").iterdir()] == ["last.ckpt"]


def test_slurm_launcher_config_composes() -> None:
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        cfg = compose(config_name="ttn", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                                                    "trainer=ddp"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.partition == "gpu" and launcher.tasks_per_node == launcher.gpus_per_node == 4
    assert cfg.trainer.strategy == "ddp_find_unused_parameters_true"


@pytest.mark.slow
def test_local_sweep_runs_each_value(synthetic_root: Path, tmp_path: Path) -> None:
    overrides = [o for o in tiny_overrides(synthetic_root, tmp_path) if not o.startswith("run_dir=")]
    _run("train_ttn.py", ["-m", "ttn.loss.content=100,400", "trainer.max_steps=1",
                          f"run_dir={tmp_path}/content_${{ttn.loss.content}}", f"hydra.sweep.dir={tmp_path}/multirun",
                          *overrides])
    for value in ("100.0", "400.0"):
        config = (tmp_path / f"content_{value}" / "ttn" / "config.yaml").read_text()
        assert f"content: {value}" in config
        assert (tmp_path / f"content_{value}" / "ttn" / "ttn.safetensors").is_file()


@pytest.mark.slow
def test_killed_run_resumes_to_the_uninterrupted_result(synthetic_root: Path, tmp_path: Path) -> None:
    def overrides(run: str) -> list[str]:
        return tiny_overrides(synthetic_root, tmp_path / run) + [
            "trainer.max_steps=60", "trainer.checkpoint_every=5", f"hydra.run.dir={tmp_path}/hydra_{run}"]

    _run("train_ttn.py", overrides("whole"))
    process = subprocess.Popen([sys.executable, "train_ttn.py", *overrides("killed")], cwd=REPO, env=ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = tmp_path / "killed" / "ttn" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 120
    while not checkpoint.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)  # what SLURM sends before preemption
    process.wait(timeout=60)
    assert checkpoint.exists()
    killed_at = torch.load(checkpoint, map_location="cpu", weights_only=True)["global_step"] // 2
    assert killed_at < 60, "the run finished before it could be interrupted"
    _run("train_ttn.py", overrides("killed"))  # same command again: resume=auto continues from last.ckpt
    a = load_file(tmp_path / "whole" / "ttn" / "ttn.safetensors")
    b = load_file(tmp_path / "killed" / "ttn" / "ttn.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)


@pytest.mark.parametrize("logger", ["csv", "tensorboard", "wandb"])
def test_every_logger_records_a_short_run_offline(logger: str, synthetic_root: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import make_config

    from dctnet.ttn.train import train_ttn

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    overrides = [o for o in tiny_overrides(synthetic_root, tmp_path) if o != "logger=csv"]
    train_ttn(make_config("ttn", overrides + [f"logger={logger}", "trainer.max_steps=2", "trainer.log_every_n_steps=1"]))
    written = [p for p in (tmp_path / "ttn").rglob("*") if p.is_file()]
    expected = {"csv": "metrics.csv", "tensorboard": "events.out.tfevents", "wandb": ".wandb"}[logger]
    assert any(expected in p.name for p in written), [p.name for p in written]
