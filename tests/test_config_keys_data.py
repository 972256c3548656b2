"""Every ``data`` key is read: changing any one changes what stage 2's data module serves.

Each leaf of the ``data`` node (synthetic data, GEM) is changed in turn; the data are generated afresh, the
TTN's data module built, and its folders, first batches and progress-grid photos compared with the unchanged
run's. ``num_workers`` and ``cache`` must change how the data are read but never which images a batch holds.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import make_config, tiny_overrides
from omegaconf import OmegaConf

from dctnet.data.datamodule import GANDataModule
from dctnet.training import ensure_synthetic_data, preview_photos
from dctnet.ttn.train import build_datamodule

# data.test_cartoons is read by evaluation only (evaluate.paired_targets interpolates it; every evaluate key is
# checked by tests/test_config_keys_evaluate.py). The data module's class is checked by
# test_the_data_module_class_comes_from_its_node.
NOT_HERE = {"data.test_cartoons", "data.loader._target_"}
BASE = ["data.synthetic.generate=true", "data.synthetic.photos=6", "data.synthetic.cartoons=6", "data.synthetic.test=2",
        "data.loader.max_images=null", "data.gem.zoom_p=0.5", "trainer.preview_count=4"]
CHANGES = {"data.photos": "${data.root}/test_photos", "data.cartoons": "${data.root}/test_cartoons",
           "data.test_photos": "${data.root}/photos", "data.loader.max_images": "3", "data.synthetic.generate": "false",
           "data.synthetic.exemplars_without": "[glasses]", "data.synthetic.exemplars_keep": "0.5", "data.gem.fill": "0", "data.gem.border": "replicate",
           "data.gem.shrink_max": "0.9"}
CONTEXT = {"data.gem.fill": ["data.gem.border=constant"],
           "data.synthetic.exemplars_keep": ["data.synthetic.exemplars_without=[glasses]"]}
READING_ONLY = {"data.loader.num_workers", "data.loader.cache"}  # how images are read, never which ones


def _leaves(node, prefix: str) -> dict:
    container = OmegaConf.to_container(node, resolve=True)
    flat = {}
    for key, value in container.items():
        if isinstance(value, dict):
            flat.update(_leaves(node[key], f"{prefix}.{key}"))
        else:
            flat[f"{prefix}.{key}"] = value
    return flat


def _changed(key: str, value) -> str:
    if key in CHANGES:
        return CHANGES[key]
    if isinstance(value, bool):
        return str(not value).lower()
    if isinstance(value, int):
        return str(value * 2 if value >= 2 else value + 1)
    if isinstance(value, float):
        return str(value * 1.5 if value * 1.5 < 1 or value >= 1 else (value + 1) / 2)
    raise TypeError(f"{key}: no rule to change {value!r}; add one to CHANGES")


def _built(root: Path, run: Path, extra: list[str]) -> dict:
    cfg = make_config("ttn", tiny_overrides(root, run) + BASE + extra)
    ensure_synthetic_data(cfg)
    datamodule = build_datamodule(cfg, iterations=3)
    loader = datamodule.train_dataloader()
    batches = [batch for _, batch in zip(range(3), loader)]
    folders = {name: (str(folder.root), [str(path) for path in folder.files], folder.max_pixels,
                      folder._cache is not None) for name, folder in datamodule.dataset.folders.items()}
    return {"folders": folders, "num_workers": loader.num_workers, "preview": preview_photos(cfg), "batches": batches}


def _same_images(a: dict, b: dict) -> bool:
    tensors = lambda built: [built["preview"]] + [t for batch in built["batches"] for t in batch.values()]  # noqa: E731
    ta, tb = tensors(a), tensors(b)
    return len(ta) == len(tb) and all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(ta, tb))


def _same(a: dict, b: dict) -> bool:
    return a["folders"] == b["folders"] and a["num_workers"] == b["num_workers"] and _same_images(a, b)


def test_every_data_key_changes_what_stage_2_reads(tmp_path: Path) -> None:
    base_root = tmp_path / "data_base"
    base = _built(base_root, tmp_path / "run_base", [])
    # generation is deterministic: the same config in another root builds the same data (only the paths move)
    elsewhere = tmp_path / "data_again"
    assert _same(_relocated(_built(elsewhere, tmp_path / "run_again", []), elsewhere, base_root), base)
    cfg = make_config("ttn", tiny_overrides(tmp_path, tmp_path) + BASE)
    leaves = {key: value for key, value in _leaves(cfg.data, "data").items() if key not in NOT_HERE}
    unread = []
    for k, (key, value) in enumerate(leaves.items()):
        root, run = tmp_path / f"data{k}", tmp_path / f"run{k}"
        if key == "data.root":  # every folder is found under it
            built = _built(root, run, [])
            assert all(folder.startswith(str(root)) for folder, *_ in built["folders"].values())
            continue
        override = f"{key}={_changed(key, value)}"
        if key == "data.synthetic.generate":  # nothing generated in a fresh root: the folders are missing
            with pytest.raises((FileNotFoundError, ValueError)):
                _built(root, run, [override])
            continue
        context = CONTEXT.get(key, [])
        reference = _built(base_root, tmp_path / f"ref{k}", context) if context else base
        result = _relocated(_built(root, run, [*context, override]), root, base_root)
        if key in READING_ONLY:
            assert _same_images(result, reference), f"{override} changed which images stage 2 reads"
        if _same(result, reference):
            unread.append(override)
    assert unread == [], f"changing these data keys changed nothing: {unread}"


def _relocated(built: dict, root: Path, base_root: Path) -> dict:
    """``built`` with its folder paths written as if its data lived under ``base_root``."""
    move = lambda path: path.replace(str(root), str(base_root))  # noqa: E731
    folders = {name: (move(r), [move(f) for f in files], pixels, cache)
               for name, (r, files, pixels, cache) in built["folders"].items()}
    return {**built, "folders": folders}


class _CountingDataModule(GANDataModule):
    """A user's data module: the stock one that counts its set-ups."""

    setups = 0

    def setup(self, stage: str | None = None) -> None:
        type(self).setups += 1
        super().setup(stage)


def test_the_data_module_class_comes_from_its_node(tmp_path: Path) -> None:
    """``data.loader._target_`` names the class every stage's data module is built from; a class that is not a
    GANDataModule is refused with the key's name."""
    target = f"{__name__}._CountingDataModule"
    cfg = make_config("ttn", tiny_overrides(tmp_path, tmp_path) + BASE + [f"data.loader._target_={target}"])
    ensure_synthetic_data(cfg)
    datamodule = build_datamodule(cfg, iterations=3)
    assert type(datamodule) is _CountingDataModule and datamodule.num_workers == cfg.data.loader.num_workers
    next(iter(datamodule.train_dataloader()))
    assert _CountingDataModule.setups > 0  # the subclass's own methods run
    wrong = make_config("ttn", tiny_overrides(tmp_path, tmp_path) + BASE + ["data.loader._target_=builtins.dict"])
    with pytest.raises(TypeError, match="data.loader._target_"):
        build_datamodule(wrong, iterations=3)
