"""The config tree: typed schema, typos fail at start naming the key, every experiment composes."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import CONF, REPO, make_config
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError


def test_typo_on_the_command_line_fails_at_start_naming_the_key() -> None:
    result = subprocess.run([sys.executable, "train_ccn.py", "trainer.max_stepz=3"], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode != 0
    assert "max_stepz" in result.stderr and "TrainerConfig" in result.stderr
    assert not (REPO / "outputs" / "dctnet" / "ccn").exists() or "Trainer.fit" not in result.stderr


def test_help_lists_the_config_groups() -> None:
    result = subprocess.run([sys.executable, "train_ttn.py", "--help"], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0
    for group in ("data:", "trainer:", "logger:", "experiment:", "ttn/loss:", "ccn/model:", "data/gem:"):
        assert group in result.stdout, group


@pytest.mark.parametrize("override", ["trainer.max_stepz=3", "data.gem.rotate_limt=4", "ttn.loss.content=abc"])
def test_schema_rejects_unknown_keys_and_wrong_types(override: str) -> None:
    with pytest.raises((ConfigCompositionException, ConfigAttributeError, ConfigKeyError, ValidationError)):
        make_config("ttn", [override])


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")))
@pytest.mark.parametrize("entry", ["ccn", "ttn", "evaluate"])
def test_every_experiment_composes_for_every_entry_point(experiment: str, entry: str) -> None:
    cfg = make_config(entry, [f"experiment={experiment}"])
    assert cfg.name == experiment.split("_")[0] or cfg.name == experiment
    assert cfg.ccn.model.size >= 4 and cfg.ttn.model.base_channels > 0


def test_loss_recipes_are_named_and_differ_as_documented() -> None:
    official = make_config("ttn", ["ttn/loss=official"]).ttn.loss
    port = make_config("ttn", ["ttn/loss=port"]).ttn.loss
    assert (official.recipe, official.surface, official.texture) == ("official", 0.1, 0.1)
    assert (port.recipe, port.surface, port.texture) == ("port", 2.0, 2.0)
    assert official.content == port.content == 200.0 and official.tv == port.tv == 10000.0


def test_gem_can_be_switched_off_by_group() -> None:
    assert make_config("ttn", ["data/gem=none"]).data.gem.enabled is False
    assert make_config("ttn", []).data.gem.enabled is True
