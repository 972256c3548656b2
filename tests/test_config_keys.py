"""Every stage-2 key is read: changing any one of them changes what training builds and writes.

Each leaf under ``ttn`` is changed in turn (a bool flipped, a number moved, a string set to another valid
choice), two iterations are trained from the same seed on the same data, and the exported model (weights and
header) or the logged losses must differ from the unchanged run's. A key nothing reads (a dead key) fails.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
import torch
from conftest import make_config, tiny_overrides
from omegaconf import OmegaConf
from safetensors.torch import load_file

from dctnet.checkpoints import load_model_file
from dctnet.ttn.train import train_ttn

# Keys a two-iteration run cannot show, each covered elsewhere: what the data module reads (test_ttn's folder
# tests), the run length (every run), and the VGG19 file (pretrained weights are not available offline;
# tests/test_weights.py loads them from the registry and refuses to go random without them).
# The landmark labelling keys act only on photo folders without an attributes.csv (the synthetic data has one):
# tests/test_expression_labels.py shows each of them at work; the init_from_* keys only when fine-tuning.
NOT_HERE = {"ttn.cartoons", "ttn.texture_cartoons", "ttn.extra_cartoons", "ttn.steps", "ttn.loss.vgg_weights",
            "ttn.loss.vgg_pretrained", "ttn.loss.face.eye_open_ratio", "ttn.loss.face.mouth_open_ratio",
            "ttn.loss.face.landmark_weights",
            "ttn.init_from_d_steps", "ttn.init_from_lr_ramp",  # fine-tuning only: tests/test_ttn.py
            # the classes built: tests/test_ttn.py swaps each
            "ttn.model._target_", "ttn.discriminator._target_", "ttn.optimizer._target_"}
STRING_CHOICES = {"gan": "hinge", "content_norm": "instance", "vgg_layer": "conv2_2", "recipe": "renamed",
                  "kind": "identity"}
BASE = ["trainer.max_steps=2", "trainer.log_every_n_steps=1", "ttn.ema_rampup=null", "ttn.loss.face.kind=expression", "ttn.loss.image=1.0",
        "ttn.loss.superpixel=1.0", "ttn.loss.superpixel_segments=16", "ttn.loss.vgg_layer=conv1_2",
        "ttn.loss.self_similarity=1.0"]


def _moved(value: float) -> float:
    """x1.5, or halfway to 1 for what must stay below 1 (Adam's betas): a change training can survive."""
    if value == 0:
        return 0.25
    return value * 1.5 if value * 1.5 < 1 or value >= 1 else (value + 1) / 2


def _changed(key: str, value):
    leaf = key.rsplit(".", 1)[-1]
    if isinstance(value, bool):
        return str(not value).lower()
    if isinstance(value, int):  # doubled: SLIC seeds a square grid, so 16 -> 17 segments is the same 4 x 4
        return str(value * 2 if value >= 2 else value + 1)
    if isinstance(value, float):
        return str(_moved(value))
    if isinstance(value, list):
        return "[" + ",".join(str(_moved(v) if isinstance(v, float) else v + 8) for v in value) + "]"
    if isinstance(value, str):
        return STRING_CHOICES[leaf]
    raise TypeError(f"{key}: no rule to change {value!r}")


def leaves(node, prefix: str) -> dict:
    """``{dotted key: value}`` of every non-null leaf under the config ``node`` (nested nodes flattened)."""
    def walk(value, key):
        if isinstance(value, dict):
            for k, v in value.items():
                yield from walk(v, f"{key}.{k}")
        elif value is not None:
            yield key, value
    return dict(walk(OmegaConf.to_container(node, resolve=True), prefix))


def _ttn_leaves(synthetic_root: Path, tmp_path: Path) -> dict:
    cfg = make_config("ttn", tiny_overrides(synthetic_root, tmp_path) + BASE)
    return {k: v for k, v in leaves(cfg.ttn, "ttn").items() if k not in NOT_HERE}


def _run(synthetic_root: Path, run_dir: Path, extra: list[str]) -> tuple[dict, dict, list]:
    path = train_ttn(make_config("ttn", tiny_overrides(synthetic_root, run_dir) + BASE + extra))
    logs = next((run_dir / "ttn" / "logs").rglob("metrics.csv"))
    outputs = load_file(path), load_model_file(path)[1], list(csv.reader(logs.open()))
    shutil.rmtree(run_dir)  # read into memory: the key sweep keeps one run on disk at a time, not dozens
    return outputs


def test_every_stage2_key_changes_what_training_builds(synthetic_root: Path, tmp_path: Path) -> None:
    base_weights, base_header, base_logs = _run(synthetic_root, tmp_path / "base", [])
    unread = []
    for k, (key, value) in enumerate(_ttn_leaves(synthetic_root, tmp_path).items()):
        override = f"{key}={_changed(key, value)}"
        weights, header, logs = _run(synthetic_root, tmp_path / f"run{k}", [override])
        same_weights = weights.keys() == base_weights.keys() and all(
            weights[n].shape == base_weights[n].shape and torch.equal(weights[n], base_weights[n]) for n in weights)
        if same_weights and header["arch"] == base_header["arch"] and header.get("loss_recipe") == \
                base_header.get("loss_recipe") and logs == base_logs:
            unread.append(override)
    assert unread == [], f"changing these keys changed nothing: {unread}"
