"""Every ``evaluate`` key is read: changing any one of them changes the report (or fails loudly).

Each leaf of the composed ``evaluate`` node has a change below; a new key without one fails the test, so
no key can be added without showing that the evaluation reads it.
"""

from __future__ import annotations

from pathlib import Path

from conftest import make_config, tiny_overrides
from omegaconf import OmegaConf

from dctnet.data.decode import list_images, read_image, write_image
from dctnet.metrics.run import run_evaluation
from dctnet.weights import MissingWeightsError

BASE = ["evaluate.feature_extractor=random", "evaluate.lpips_pretrained=false", "evaluate.bootstrap=20",
        "evaluate.align_faces=false"]


def _leaves(node, prefix: str = "evaluate") -> dict:
    if isinstance(node, dict):
        return {k: v for key, value in node.items() for k, v in _leaves(value, f"{prefix}.{key}").items()}
    return {prefix: node}


def test_every_evaluate_key_changes_the_report(synthetic_root: Path, tmp_path: Path) -> None:
    mine, other = tmp_path / "mine", tmp_path / "cyclegan_outputs"
    targets = list_images(synthetic_root / "test_cartoons")
    for k, path in enumerate(targets):
        write_image(mine / path.name, read_image(targets[(k + 1) % len(targets)]))
        write_image(other / path.name, read_image(path))

    def report(run: str, extra: list[str]) -> str:
        overrides = tiny_overrides(synthetic_root, tmp_path / run) + BASE + [f"+evaluate.methods.mine={mine}", *extra]
        try:
            written = run_evaluation(make_config("evaluate", overrides))
        except (MissingWeightsError, ValueError) as error:  # asked for weights that are not here: read, visibly
            return f"error: {error}"
        text = f"{written}\n{(written.parent / 'metrics.json').read_text()}"
        return text.replace(str(tmp_path / run), "<run_dir>")

    changes = {
        "evaluate.methods.mine": f"evaluate.methods.mine={other}",
        "evaluate.sources": f"evaluate.sources={synthetic_root / 'test_cartoons'}",
        "evaluate.reference": f"evaluate.reference={synthetic_root / 'photos'}",
        "evaluate.paired_targets": "evaluate.paired_targets=null",
        "evaluate.out_dir": f"evaluate.out_dir={tmp_path / 'elsewhere' / 'eval'}",
        "evaluate.feature_extractor": "evaluate.feature_extractor=inception",
        "evaluate.align_faces": "evaluate.align_faces=true",
        "evaluate.lpips_pretrained": "evaluate.lpips_pretrained=true",
        "evaluate.baselines": "evaluate.baselines=[identity]",
        "evaluate.trained_baselines.cyclegan": f"evaluate.trained_baselines.cyclegan={other}",
        "evaluate.trained_baselines.toonify": f"evaluate.trained_baselines.toonify={other}",
        "evaluate.bootstrap": "evaluate.bootstrap=40",
    }
    cfg = make_config("evaluate", tiny_overrides(synthetic_root, tmp_path) + BASE + [f"+evaluate.methods.mine={mine}"])
    leaves = _leaves(OmegaConf.to_container(cfg.evaluate, resolve=True))
    assert set(leaves) == set(changes), f"evaluate keys without a change to test: {set(leaves) ^ set(changes)}"
    base = report("base", [])
    assert not base.startswith("error") and report("again", []) == base  # the comparison is not vacuous
    unread = [change for k, change in enumerate(changes.values()) if report(f"run{k}", [change]) == base]
    assert unread == [], f"changing these evaluate keys changed nothing: {unread}"
