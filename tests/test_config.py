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


# ---- one source of truth: values live in conf/ once, the schema holds types only ------------------------------
def _leaves(node, prefix: str = "") -> dict:
    if isinstance(node, dict):
        return {k: v for key, value in node.items() for k, v in _leaves(value, f"{prefix}{key}.").items()}
    return {prefix[:-1]: node}


def test_the_schema_holds_no_values() -> None:
    from omegaconf import OmegaConf

    from dctnet.config import RunConfig

    schema = OmegaConf.structured(RunConfig)
    valued = {key: value for key, value in _leaves(OmegaConf.to_container(schema, resolve=False)).items()
              if value != "???" and key not in ("logger", "experiment")}
    assert valued == {}, f"values in dctnet/config.py instead of conf/: {valued}"


PACKAGED = {"ccn/stage": "ccn/stage@ccn.pretrain"}  # groups selected under another package name
GROUP_OPTIONS = [(group.relative_to(CONF).as_posix(), option.stem) for group in sorted(CONF.rglob("*"))
                 if group.is_dir() and group.name not in ("experiment", "hydra", "launcher")
                 for option in sorted(group.glob("*.yaml"))]


def _select(group: str, option: str) -> str:
    return f"{PACKAGED.get(group, group)}={option}"


@pytest.mark.parametrize("experiment", [None, *sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))])
@pytest.mark.parametrize("entry", ["ccn", "ttn", "evaluate", "baselines"])
def test_every_entry_point_and_experiment_fills_every_key(entry: str, experiment: str | None) -> None:
    _assert_filled(entry, [f"experiment={experiment}"] if experiment else [])


@pytest.mark.parametrize("group, option", GROUP_OPTIONS)
def test_every_group_option_fills_every_key(group: str, option: str) -> None:
    _assert_filled("ttn", [_select(group, option)])  # every entry point shares base.yaml's groups


def _assert_filled(entry: str, overrides: list[str]) -> None:
    from omegaconf import OmegaConf

    cfg = make_config(entry, overrides)
    missing = [k for k, v in _leaves(OmegaConf.to_container(cfg, resolve=False)).items() if v == "???"]
    assert missing == [], f"{entry} {overrides}: no value for {missing}"


def _inherited(path, package: str, parent_overrides: list[str]) -> dict:
    from omegaconf import OmegaConf

    cfg = make_config("ttn", parent_overrides)
    node = OmegaConf.select(cfg, package) if package else cfg
    return _leaves(OmegaConf.to_container(node, resolve=False))


def _body(path) -> dict:
    from omegaconf import OmegaConf

    raw = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    raw.pop("defaults", None)
    return _leaves(raw)


@pytest.mark.parametrize("group, option", [(g, o) for g, o in GROUP_OPTIONS
                                           if "defaults" in (CONF / g / f"{o}.yaml").read_text()])
def test_an_option_that_extends_another_restates_none_of_its_values(group: str, option: str) -> None:
    """``port`` extends ``official``, ``gpu`` extends ``cpu``...: each sets only what differs."""
    from omegaconf import OmegaConf

    path = CONF / group / f"{option}.yaml"
    defaults = OmegaConf.load(path).get("defaults", [])
    parents = [entry for entry in defaults if isinstance(entry, str) and entry != "_self_"]
    if not parents:  # its defaults name sub-groups only (data/synthetic: gem), not a sibling it extends
        return
    package = PACKAGED.get(group, group).split("@")[-1].replace("/", ".")
    inherited = _inherited(path, package, [_select(group, parents[0])])
    restated = {k: v for k, v in _body(path).items() if k in inherited and inherited[k] == v}
    assert restated == {}, f"{group}/{option}.yaml restates values of {parents[0]}: {restated}"


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")))
def test_an_experiment_restates_no_value_it_inherits(experiment: str) -> None:
    from omegaconf import OmegaConf

    path = CONF / "experiment" / f"{experiment}.yaml"
    parent_overrides = []
    for entry in OmegaConf.load(path).get("defaults", []):
        if isinstance(entry, str) and entry != "_self_":
            parent_overrides.append(f"experiment={entry}")
        elif not isinstance(entry, str):
            (key, value), = entry.items()
            parent_overrides.append(f"{key.replace('override /', '')}={value}")
    inherited = _inherited(path, "", parent_overrides)
    restated = {k: v for k, v in _body(path).items() if k in inherited and inherited[k] == v}
    assert restated == {}, f"experiment/{experiment}.yaml restates inherited values: {restated}"
