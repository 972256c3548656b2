"""The benchmark scripts stay runnable: each imports against today's library and exposes ``main``.

They are too slow for the suite (minutes to an hour); what breaks them silently is a renamed import,
as when the TTN wrapper became ``dctnet.models.unet.TTN``.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(p for p in BENCHMARKS.glob("*.py") if p.name != "common.py")


def _load(script: Path, monkeypatch: pytest.MonkeyPatch):
    """Import a benchmark script as a module (benchmarks/ is not a package; its scripts import common.py)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"benchmark_{script.stem}", script)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_benchmark_script_imports_and_has_a_main(script: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = _load(script, monkeypatch)
    assert callable(getattr(module, "main", None)), f"{script.name} has no main()"


@pytest.mark.parametrize("script, args, printed", [
    ("ttn.py", ["--sizes", "32", "--train-size", "32", "--train-batch", "2"], "TTN train 32px batch 2"),
    ("box_filter.py", ["--sizes", "32", "--batch", "2"], "largest difference"),
    ("ccn_step.py", ["--sizes", "32", "--batch", "2", "--channel-max", "16", "--iterations", "1"], "CCN 32px batch 2"),
])
def test_benchmark_script_runs_at_a_tiny_size(script: str, args: list[str], printed: str,
                                              monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """The timing scripts build the real modules: a constructor they call stale fails here, not in `make bench`."""
    module = _load(BENCHMARKS / script, monkeypatch)
    monkeypatch.setattr(sys, "argv", [script, *args])
    module.main()
    output = capsys.readouterr().out
    assert printed in output and "CPU features" in output


def test_learning_benchmark_test_sets(synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """All pairs, the attribute subset, the shifted copy and the first-N set Toonify is scored on, each a pair of
    folders with the same file names; a rerun with fewer pairs leaves no earlier run's files behind."""
    import csv

    learning = _load(BENCHMARKS / "learning.py", monkeypatch)
    monkeypatch.setattr(learning, "TOONIFY_PAIRS", 3)
    (tmp_path / "out" / "sets" / "first" / "photos").mkdir(parents=True)
    (tmp_path / "out" / "sets" / "first" / "photos" / "stale.png").write_bytes(b"from an earlier run")
    sets = learning.test_sets(synthetic_root, tmp_path / "out", "long_hair")
    pngs = lambda folder: sorted(p.name for p in folder.glob("*.png"))  # noqa: E731
    everything = pngs(synthetic_root / "test_photos")
    with open(synthetic_root / "test_photos" / "faces.csv") as handle:
        with_attribute = sorted(r["file"] for r in csv.DictReader(handle) if r["long_hair"] == "True")
    assert 0 < len(with_attribute) < len(everything)  # the fixture's seed gives a proper subset
    expected = {"all": everything, "with long_hair": with_attribute, "geometry-shifted": everything,
                learning.TOONIFY_SET: everything[:3]}
    assert list(sets) == list(expected)
    for name, (photos, targets) in sets.items():
        assert pngs(photos) == pngs(targets) == expected[name], name


def test_learning_report_states_the_paired_difference(monkeypatch: pytest.MonkeyPatch) -> None:
    """The calibration claim's test: the table of a set is followed by dctnet - ccn_none on the same images."""
    learning = _load(BENCHMARKS / "learning.py", monkeypatch)
    cell = lambda mean: {"mean": mean, "ci_low": mean - 0.001, "ci_high": mean + 0.001, "count": 10}  # noqa: E731
    methods = {m: {"paired_l1": cell(l1), "paired_ssim": cell(0.5), "paired_lpips": cell(0.05), "fid": 1.0}
               for m, l1 in (("identity", 0.14), ("dctnet", 0.078), ("ccn_none", 0.079))}
    gap = {"paired_l1": {"mean": -0.0008, "ci_low": -0.0011, "ci_high": -0.0005},
           "paired_lpips": {"mean": -0.001, "ci_low": -0.0014, "ci_high": -0.0006}}
    text = learning.markdown({"all": methods}, (["dark_skin"], {"photos": {"dark_skin": 0.25}}), ["- header"],
                             {"all": "learning/all.png"}, {"all": gap})
    assert ("Paired difference dctnet - ccn_none on the same images (mean, 95 % bootstrap): "
            "paired L1 -0.0008 [-0.0011, -0.0005]; paired LPIPS -0.0010 [-0.0014, -0.0006]") in text
    assert text.index("| ccn_none |") < text.index("Paired difference") < text.index("![all]")


def test_coverage_ceiling_set_is_g_src_samples_matched_like_the_calibrated_ones(
        synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ceiling row: a colour-matched copy of G_src's samples with the exemplars' colour statistics, the
    originals untouched, and no file of an earlier run left in the copy."""
    import numpy as np

    from dctnet.ccn.colour_match import folder_statistics

    learning = _load(BENCHMARKS / "learning.py", monkeypatch)
    samples = tmp_path / "g_src_samples"
    shutil.copytree(synthetic_root / "photos", samples)
    before = {p.name: p.read_bytes() for p in samples.glob("*.png")}
    stale = tmp_path / "g_src_samples_colour_matched" / "stale.png"
    stale.parent.mkdir()
    stale.write_bytes(b"from an earlier run")
    copy = learning.colour_matched_copy(samples, synthetic_root / "cartoons")
    assert {p.name: p.read_bytes() for p in samples.glob("*.png")} == before
    assert sorted(p.name for p in copy.glob("*.png")) == sorted(before)
    matched, exemplars, original = (folder_statistics(f) for f in (copy, synthetic_root / "cartoons", samples))
    assert np.abs(matched.mean - exemplars.mean).max() < 0.02 < np.abs(original.mean - exemplars.mean).max()
