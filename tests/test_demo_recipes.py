"""The demo and the learning benchmark train each method in its own folder, on the run's one data set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import dctnet.demo as demo


@pytest.mark.parametrize("extra", [[], ["run_dir=/tmp/elsewhere", "data.synthetic.generate=false"]])
def test_each_method_trains_in_its_own_folder_on_the_runs_data(extra: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Given ``run_dir=...`` for the whole run, the ablations once trained into the full method's folder, each
    overwriting the last model; and each ablation read (or generated) its data under its own folder."""
    trained, generated, order = {}, [], []

    def fake_ccn(cfg):
        order.append("stage 1")
        return {"calibrated": Path(cfg.run_dir) / "ccn" / "calibrated" / "kept"}

    def fake_ttn(cfg):
        order.append(str(cfg.run_dir))
        trained[str(cfg.run_dir)] = cfg
        return Path(cfg.run_dir) / "ttn" / "ttn.safetensors"

    monkeypatch.setattr("dctnet.ccn.train.train_ccn", fake_ccn)
    monkeypatch.setattr("dctnet.ttn.train.train_ttn", fake_ttn)
    monkeypatch.setattr("dctnet.training.ensure_synthetic_data", lambda cfg: generated.append(cfg.data.root))
    calibrated, models = demo.train_method_and_ablations(extra, "learning")
    run_dir = Path(extra[0].split("=", 1)[1]) if extra else Path("outputs/learning")
    assert {name: Path(path).parents[1] for name, path in models.items()} == {
        "dctnet": run_dir, "ccn_none": run_dir / "ablations" / "ccn_none", "no_gem": run_dir / "ablations" / "no_gem"}
    assert {cfg.data.root for cfg in trained.values()} == {str(run_dir / "data")}
    assert generated == [str(run_dir / "data")], "the data set is made once, before runs that may start together"
    assert order[0] == "stage 1", "in turn, stage 1 comes before the TTNs that read its samples"
    dctnet, ccn_none, no_gem = (trained[str(Path(p).parents[1])] for p in models.values())
    assert dctnet.ttn.cartoons == no_gem.ttn.cartoons == str(calibrated)
    assert list(ccn_none.ttn.extra_cartoons) == [] and ccn_none.ttn.cartoons is None
    assert dctnet.data.gem.enabled and ccn_none.data.gem.enabled and not no_gem.data.gem.enabled


def test_runs_trained_side_by_side_land_where_runs_in_turn_do(synthetic_root: Path, tmp_path: Path) -> None:
    """``workers=2`` trains stage 1 and the TTNs in their own processes (dctnet/jobs.py), each TTN that reads the
    calibrated samples only once stage 1 has written them (else its data module finds no folder): the models land
    where the sequential run puts them, loadable, and each run's recipe reaches its process (ccn_none without the
    calibrated samples)."""
    from safetensors.torch import load_file

    from conftest import tiny_overrides

    extra = tiny_overrides(synthetic_root, tmp_path) + ["ccn.pretrain.steps=2", "ccn.adapt.steps=2", "ttn.steps=2",
                                                        "ttn.warmup_steps=1", "ttn.loss.face.kind=none",
                                                        "ttn.loss.face.weight=0"]
    calibrated, models = demo.train_method_and_ablations(extra, "demo", ablations=("ccn_none",), workers=2)
    assert set(models) == {"dctnet", "ccn_none"}
    assert calibrated == tmp_path / "ccn" / "calibrated" / "kept" and any(calibrated.glob("*.png"))
    assert Path(models["dctnet"]).parents[1] == tmp_path
    assert Path(models["ccn_none"]).parents[1] == tmp_path / "ablations" / "ccn_none"
    for path in models.values():
        assert load_file(path), f"{path} holds no tensors"
    assert load_file(models["dctnet"]).keys() == load_file(models["ccn_none"]).keys()


@pytest.mark.slow
def test_make_demo_runs_every_method_side_by_side_and_reports_them(synthetic_root: Path, tmp_path: Path) -> None:
    """`make demo`'s own entry point, at toy size: stage 1, the TTNs and, with --baselines, both baselines (two at a
    time), the stylized test photos and astronaut, and one report that scores every method."""
    from conftest import tiny_overrides

    tiny = tiny_overrides(synthetic_root, tmp_path) + [
        "ccn.pretrain.steps=2", "ccn.adapt.steps=2", "ttn.steps=2", "ttn.warmup_steps=1", "ttn.loss.face.kind=none",
        "ttn.loss.face.weight=0", "cyclegan.ngf=8", "cyclegan.ndf=8", "cyclegan.blocks=2", "toonify.steps=2",
        "toonify.mean_latents=16", "evaluate.bootstrap=10"]
    report = demo.main([*tiny, "--jobs=2", "--baselines"])
    text = report.read_text()
    for method in ("dctnet", "cyclegan", "toonify", "identity", "cartoon_filter"):  # the methods demo.yaml scores
        assert f"| {method} |" in text, f"{method} missing from the report"
    tests = len(list((synthetic_root / "test_photos").glob("*.png")))
    for method in ("dctnet", "cyclegan", "toonify"):
        assert len(list((tmp_path / "stylized" / method).glob("*.png"))) == tests, method
    assert (tmp_path / "stylized" / "astronaut_dctnet.png").is_file()
    # Toonify's run records how well it projected the photos (benchmarks/learning.py's header reads it from there)
    record = json.loads((tmp_path / "stylized" / "toonify" / "provenance.json").read_text())
    assert 0 < record["projection_error"] < 2, record
    # without --baselines (make demo's default) only the method is trained, and the baselines' outputs the run
    # above left in the same run_dir are not scored as this run's
    text = demo.main(tiny).read_text()
    assert "| dctnet |" in text and "| cartoon_filter |" in text
    assert "| cyclegan |" not in text and "| toonify |" not in text
