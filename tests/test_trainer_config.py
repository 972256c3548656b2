"""The Trainer is built from ``conf/trainer`` by ``hydra.utils.instantiate``: every Lightning key arrives as set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from conftest import make_config, tiny_overrides
from omegaconf import OmegaConf

from dctnet.gan_base import STEPS_PER_ITERATION
from dctnet.training import OWN_TRAINER_KEYS, build_trainer

RECEIVED: dict[str, Any] = {}


def record_arguments(**kwargs: Any) -> dict[str, Any]:
    """A stand-in ``trainer._target_``: keeps what the Trainer would have been given."""
    RECEIVED.clear()
    RECEIVED.update(kwargs)
    return kwargs


def test_every_lightning_key_of_conf_trainer_reaches_the_target(tmp_path: Path) -> None:
    overrides = tiny_overrides(tmp_path, tmp_path) + ["trainer.log_every_n_steps=7", "trainer.gradient_clip_val=0.5",
                                                      "trainer.deterministic=true", "trainer.precision=32-true",
                                                      f"trainer._target_={__name__}.record_arguments"]
    cfg = make_config("ttn", overrides)
    build_trainer(cfg, tmp_path, iterations=5)
    lightning = {key: value for key, value in OmegaConf.to_container(cfg.trainer).items()
                 if key not in OWN_TRAINER_KEYS and key != "_target_"}
    assert lightning, "conf/trainer names no Lightning argument"
    assert {key: RECEIVED.get(key) for key in lightning} == lightning
    assert RECEIVED["log_every_n_steps"] == 7 and RECEIVED["gradient_clip_val"] == 0.5
    # dctnet's own keys are converted, not passed through
    assert not set(OWN_TRAINER_KEYS) - {"max_steps", "precision"} & set(RECEIVED)
    assert RECEIVED["max_steps"] == 5 * STEPS_PER_ITERATION and RECEIVED["precision"] == "32-true"


def test_the_default_target_is_a_lightning_trainer(tmp_path: Path) -> None:
    cfg = make_config("ttn", tiny_overrides(tmp_path, tmp_path) + ["trainer.log_every_n_steps=7"])
    trainer = build_trainer(cfg, tmp_path, iterations=3)
    assert isinstance(trainer, pl.Trainer)
    assert trainer.log_every_n_steps == 7 and trainer.max_steps == 3 * STEPS_PER_ITERATION
