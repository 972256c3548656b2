"""Every stage-1 key is read: changing any one of them changes what stage 1 builds, writes or logs.

As tests/test_config_keys.py does for stage 2: each leaf of a stage recipe is changed in turn on a
two-iteration adaptation from one fixed G_src, each leaf of ``ccn.model`` on a pretraining run, and each
leaf of ``ccn.sampling`` on the sampling stage; the export, the logged losses or the calibrated samples must
differ from the unchanged run's. A key nothing reads (a dead key) fails.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import make_config, tiny_overrides
from safetensors.torch import load_file
from test_config_keys import _changed, leaves

from dctnet.ccn.train import train_ccn
from dctnet.data.decode import read_image

# Every stage-1 recipe key is exercised on the adapt stage (it reads the same schema as pretraining, plus
# the keys only adaptation uses: identity_weight, colour_layout_*, self_similarity_*, freeze). The run length is every run's business.
STAGE_NOT_HERE = {"steps"}
# Values chosen so that each key acts within two iterations (every regulariser on, every iteration).
STAGE_BASE = ["r1_every=1", "path_every=1", "path_length=2.0", "path_batch_shrink=2", "mixing=0.9",
              "diffaugment=[color]", "freeze=[style.1.weight]", "identity_weight=0.5", "colour_layout_weight=0.5",
              "self_similarity_weight=0.5", "flip=true", "r1=0.1",
              # a 1-image EMA half-life whose ramp-up binds in iteration 0 only: both keys act within two iterations
              "ema_half_life_kimg=0.001", "ema_rampup=0.2"]
LIST_CHANGES = {"diffaugment": "[translation]", "freeze": "[]", "mixing": "0.0", "patch_discriminator": "8"}
STAGE_CONTEXT = {"patch_image_weight": ["patch_discriminator=8"]}  # acts only beside a patch D
# rosinality's channel multiplier widens the 64 px and larger layers only, and only below the width cap.
MODEL_CONTEXT = {"channel_multiplier": ["ccn.model.size=64", "ccn.model.channel_max=300"]}
# Sampling: truncation below 1 so the mean latent is used, source shading on so that its grid acts; batch_size must
# change nothing (checked below).
SAMPLING_BASE = ["ccn.sampling.truncation=0.7", "ccn.sampling.min_identity=-1.0", "ccn.sampling.blend_width=0.0",
                 "ccn.sampling.source_shading=0.5"]
SAMPLING_CHANGES = {"min_identity": "1.0", "blend_width": "0.5", "noise_strength": "0.0", "source_shading": "1.0"}


def _leaves(node, prefix: str) -> dict:
    """Every leaf under ``node`` (the optimiser's nested keys too), but the classes built (``_target_``:
    tests/test_ccn.py swaps the optimiser's)."""
    return {k: v for k, v in leaves(node, prefix).items() if not k.endswith("._target_")}


def _outputs(stage_dir: Path) -> tuple[dict, list]:
    logs = next((stage_dir / "logs").rglob("metrics.csv"), None)
    outputs = load_file(stage_dir / "ccn.safetensors"), list(csv.reader(logs.open())) if logs else []
    shutil.rmtree(stage_dir.parent.parent)  # the run, read into memory: the sweep keeps one run on disk at a time
    return outputs


def _same(a: tuple[dict, list], b: tuple[dict, list]) -> bool:
    (wa, la), (wb, lb) = a, b
    return la == lb and wa.keys() == wb.keys() and all(wa[k].shape == wb[k].shape and (wa[k] == wb[k]).all() for k in wa)


@pytest.fixture(scope="module")
def source(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("source")
    cfg = make_config("ccn", tiny_overrides(synthetic_root, run) + ["ccn.stages=[pretrain]", "trainer.max_steps=1"])
    return train_ccn(cfg)["pretrain"]


def test_every_stage_recipe_key_changes_the_adaptation(synthetic_root: Path, tmp_path: Path, source: Path) -> None:
    def adapt(run: str, extra: list[str]) -> tuple[dict, list]:
        overrides = tiny_overrides(synthetic_root, tmp_path / run) + [
            "ccn.stages=[adapt]", f"ccn.source_checkpoint={source}", "trainer.max_steps=2",
            "trainer.log_every_n_steps=1", *[f"ccn.adapt.{o}" for o in STAGE_BASE], *extra]
        train_ccn(make_config("ccn", overrides))
        return _outputs(tmp_path / run / "ccn" / "adapt")

    base = adapt("base", [])
    assert _same(adapt("again", []), base)  # deterministic, so a difference below means the key acted
    cfg = make_config("ccn", tiny_overrides(synthetic_root, tmp_path) + [f"ccn.adapt.{o}" for o in STAGE_BASE])
    unread = []
    for k, (key, value) in enumerate(_leaves(cfg.ccn.adapt, "ccn.adapt").items()):
        leaf = key.rsplit(".", 1)[-1]
        if leaf in STAGE_NOT_HERE:
            continue
        override = f"{key}={LIST_CHANGES.get(leaf) or _changed(key, value)}"
        context = [f"ccn.adapt.{o}" for o in STAGE_CONTEXT.get(leaf, [])]
        if _same(adapt(f"run{k}", [*context, override]), adapt(f"ref{k}", context) if context else base):
            unread.append(override)
    assert unread == [], f"changing these stage keys changed nothing: {unread}"


def test_every_model_key_changes_the_pretrained_generator(synthetic_root: Path, tmp_path: Path) -> None:
    def pretrain(run: str, extra: list[str]) -> tuple[dict, list]:
        overrides = tiny_overrides(synthetic_root, tmp_path / run) + [
            "ccn.stages=[pretrain]", "trainer.max_steps=1", "trainer.log_every_n_steps=1", *extra]
        train_ccn(make_config("ccn", overrides))
        return _outputs(tmp_path / run / "ccn" / "pretrain")

    base = pretrain("base", [])
    assert _same(pretrain("again", []), base)
    cfg = make_config("ccn", tiny_overrides(synthetic_root, tmp_path))
    unread = []
    for k, (key, value) in enumerate(_leaves(cfg.ccn.model, "ccn.model").items()):
        override = f"{key}={_changed(key, value)}"
        context = MODEL_CONTEXT.get(key.rsplit(".", 1)[-1], [])
        reference = pretrain(f"reference{k}", context) if context else base
        if _same(pretrain(f"run{k}", [*context, override]), reference):
            unread.append(override)
    assert unread == [], f"changing these model keys changed nothing: {unread}"


def test_every_sampling_key_changes_the_calibrated_samples(synthetic_root: Path, tmp_path: Path, source: Path) -> None:
    adapted = tmp_path / "adapted"
    train_ccn(make_config("ccn", tiny_overrides(synthetic_root, adapted) + [
        "ccn.stages=[adapt]", f"ccn.source_checkpoint={source}", "trainer.max_steps=2"]))

    def sample(run: str, extra: list[str]) -> tuple[str, np.ndarray, np.ndarray]:
        (tmp_path / run / "ccn" / "adapt").mkdir(parents=True)
        shutil.copy(adapted / "ccn" / "adapt" / "ccn.safetensors", tmp_path / run / "ccn" / "adapt")
        overrides = tiny_overrides(synthetic_root, tmp_path / run) + [
            "ccn.stages=[sample]", f"ccn.source_checkpoint={source}", *SAMPLING_BASE, *extra]
        out = train_ccn(make_config("ccn", overrides))["calibrated"].parent
        manifest = (out / "manifest.csv").read_text()
        def stack(folder: Path) -> np.ndarray:
            return np.stack([read_image(p) for p in sorted(folder.glob("*.png"))]).astype(int)

        return manifest, stack(out / "all"), stack(out / "kept")  # kept/: after colour matching

    def same(a: tuple[str, np.ndarray, np.ndarray], b: tuple[str, np.ndarray, np.ndarray]) -> bool:
        return a[0] == b[0] and all(x.shape == y.shape and (x == y).all() for x, y in zip(a[1:], b[1:]))

    base = sample("base", [])
    assert same(sample("again", []), base)
    cfg = make_config("ccn", tiny_overrides(synthetic_root, tmp_path) + SAMPLING_BASE)
    unread = []
    for k, (key, value) in enumerate(_leaves(cfg.ccn.sampling, "ccn.sampling").items()):
        leaf = key.rsplit(".", 1)[-1]
        override = f"{key}={SAMPLING_CHANGES.get(leaf) or _changed(key, value)}"
        result = sample(f"run{k}", [override])
        if leaf == "batch_size":  # how many are drawn at once must not change what is drawn (up to float rounding)
            assert result[1].shape == base[1].shape and np.abs(result[1] - base[1]).max() <= 1, \
                "the calibrated samples depend on ccn.sampling.batch_size"
        elif same(result, base):
            unread.append(override)
    assert unread == [], f"changing these sampling keys changed nothing: {unread}"
