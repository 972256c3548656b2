"""Few-shot learning benchmark: does the method learn the style, and does calibration beat no calibration?

Runs the whole method at toy scale on CPU (``experiment=learning``: 64 px synthetic portraits, 1000 photos,
100 training cartoons none of which has dark skin, 1000 exact test pairs), the ``ccn_none`` and ``no_gem``
ablations and the CycleGAN and Toonify baselines (train_baseline.py), then scores every method with
evaluate.py's metrics (95 % bootstrap intervals) on
- all test pairs,
- the attribute subset (test faces with the attribute no exemplar shows),
- a geometry-shifted copy of the test pairs (rotated, scaled, off-centre: what GEM is for),
- the first 200 pairs, the only set Toonify is scored on (it projects each photo: minutes per hundred),
and counts attributes (coverage) in the photos, G_src's samples (also colour-matched to the exemplars as stage 1
matches its kept samples: the ceiling for calibrated samples), the exemplars and the calibrated samples.
Writes ``docs/learning.md`` and its grids under ``docs/learning/``. The last full run took 39.1 min on a 2-core
Xeon with AMX, the G_src cached (training 34.3: stage 1 beside CycleGAN, then the TTNs and Toonify's projections,
two runs at a time; scoring and coverage 4.8).

    python benchmarks/learning.py [hydra overrides, e.g. ttn.steps=200 for a quick look]
    python benchmarks/learning.py --score-only   # re-score the models of the last run, no training
    python benchmarks/learning.py --jobs=1       # the four runs after stage 1 one at a time (default: 2 at a time)
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine  # noqa: E402

from dctnet.config import register_configs  # noqa: E402
from dctnet.data.decode import list_images, read_image, write_image  # noqa: E402
from dctnet.data.decode import to_tensor, to_uint8  # noqa: E402
from dctnet.baselines.train import BASELINES, MODEL_FILES, load_baseline, train_baseline, trained_on  # noqa: E402
from dctnet.ccn.colour_match import match_sample_colours  # noqa: E402
from dctnet.ccn.train import kept_samples_folder, source_generator_path  # noqa: E402
from dctnet.demo import TRAINED_ON, _config, train_method_and_ablations  # noqa: E402
from dctnet.inference.stylize import load_stylizer, stylize_folder  # noqa: E402
from dctnet.jobs import workers_option  # noqa: E402
from dctnet.metrics.coverage import train_coverage_model  # noqa: E402
from dctnet.metrics.evaluate import paired_difference, read_per_image  # noqa: E402
from dctnet.metrics.provenance import FILE as PROVENANCE, write_provenance  # noqa: E402
from dctnet.metrics.run import run_evaluation  # noqa: E402
from dctnet.training import ensure_synthetic_data, prepare_environment  # noqa: E402

log = logging.getLogger("benchmarks.learning")

EXPERIMENT = "learning"
SHIFT_SEED = 1234
# Toonify projects each photo into G_src (``toonify.steps`` Adam steps): 10 min per 200 photos on one thread, so on
# 1000 pairs it is scored on the first 200 only (the same 200 as in the benchmark's earlier 200-pair runs, data
# seed 0), where every other method is scored too. G_src draws aligned faces: no geometry-shifted set for it.
TOONIFY_PAIRS = 200
TOONIFY_SET = f"first {TOONIFY_PAIRS} pairs"
PROJECTING = {"toonify"}  # methods scored on TOONIFY_SET only
# The tables show paired L1, SSIM, LPIPS and FID: identity similarity, the costliest metric (a FaceNet pass per
# image), is left to evaluate.py and the demo's report.
SCORING = ["identity.network=none"]
# The calibration claim, tested on the same images: the full method's per-image gap to the ablation without
# calibrated samples, with a paired bootstrap interval (each image's difficulty cancels in the difference).
COMPARED = ("dctnet", "ccn_none")
COMPARED_METRICS = {"paired_l1": "paired L1", "paired_lpips": "paired LPIPS"}


def shifted_pair(photo: np.ndarray, cartoon: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The same random rotation (±25°), scale (0.7-1.2) and off-centre shift (±15 %) applied to both images."""
    size = photo.shape[0]
    angle, scale = rng.uniform(-25, 25), rng.uniform(0.7, 1.2)
    matrix = cv2.getRotationMatrix2D((size / 2, size / 2), angle, scale)
    matrix[:, 2] += rng.uniform(-0.15, 0.15, size=2) * size
    warp = lambda image: cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR,  # noqa: E731
                                        borderMode=cv2.BORDER_REFLECT_101)
    return warp(photo), warp(cartoon)


def test_sets(data_root: Path, out: Path, attribute: str) -> dict[str, tuple[Path, Path]]:
    """``{name: (photos, paired targets)}``: all pairs, the ``attribute`` subset, the geometry-shifted pairs and
    the first ``TOONIFY_PAIRS`` pairs."""
    photos, targets = data_root / "test_photos", data_root / "test_cartoons"
    with open(photos / "faces.csv") as handle:
        has = {row["file"] for row in csv.DictReader(handle) if row[attribute] == "True"}
    sets = {"all": (photos, targets)}
    subset = (out / "sets" / attribute / "photos", out / "sets" / attribute / "targets")
    shifted = (out / "sets" / "shifted" / "photos", out / "sets" / "shifted" / "targets")
    first = (out / "sets" / "first" / "photos", out / "sets" / "first" / "targets")
    for folder in (*subset, *shifted, *first):
        shutil.rmtree(folder, ignore_errors=True)  # an earlier run's set may hold other pairs
    rng = np.random.default_rng(SHIFT_SEED)
    for index, path in enumerate(list_images(photos)):
        target = targets / path.name
        for copy_to, wanted in ((subset, path.name in has), (first, index < TOONIFY_PAIRS)):
            if wanted:
                for folder, source in zip(copy_to, (path, target)):
                    folder.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(source, folder / path.name)
        moved = shifted_pair(read_image(path), read_image(target), rng)
        for folder, image in zip(shifted, moved):
            write_image(folder / path.name, image)
    sets[f"with {attribute}"] = subset
    sets["geometry-shifted"] = shifted
    sets[TOONIFY_SET] = first
    return sets


def copy_projected(stylized: Path, photos: list[Path], out: Path) -> dict:
    """A projecting baseline's outputs for ``photos``, written by its own run (train_baseline stylizes
    ``data.test_photos``), copied to ``out``; returns that run's provenance record (with its projection error)."""
    missing = [photo.name for photo in photos if not (stylized / photo.name).is_file()]
    if missing:
        raise FileNotFoundError(f"{stylized} lacks {len(missing)} of the {len(photos)} test photos' outputs "
                                f"(e.g. {missing[:3]}): train the baseline with data.test_photos set to them")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for photo in photos:
        shutil.copy2(stylized / photo.name, out / photo.name)
    shutil.copy2(stylized / PROVENANCE, out / PROVENANCE)
    return json.loads((stylized / PROVENANCE).read_text())


def write_source_samples(cfg, out: Path, count: int = 256) -> Path:
    """``count`` G_src samples (truncation 1, seed 0): does the pretrained generator draw the photos' variety?"""
    from dctnet.ccn.module import build_generator
    from dctnet.ccn.source import load_source
    from dctnet.config import StyleGANConfig, typed

    model = typed(cfg.ccn.model, StyleGANConfig)
    generator = build_generator(model).eval()
    generator.load_state_dict(load_source(source_generator_path(cfg), model)["g_ema"])
    shutil.rmtree(out, ignore_errors=True)
    with torch.no_grad():
        z = torch.randn(count, model.style_dim, generator=torch.Generator().manual_seed(0))
        for start in range(0, count, 64):
            images = generator([z[start:start + 64]], randomize_noise=False)[0].clamp(-1, 1)
            for k, image in enumerate(to_uint8(images)):
                write_image(out / f"{start + k:06d}.png", image)
    return out


def colour_matched_copy(samples: Path, exemplars: Path) -> Path:
    """A copy of ``samples`` put through the colour matching stage 1 gives its kept samples (one map to the
    exemplars' colour statistics): G_src's own samples so treated are what a calibration that kept all of G_src's
    content would count, so their coverage is the ceiling for ours. In the two-tone style it is far below the
    photos' dark skin: the exemplars' light-skinned statistics lift every face toward peach, and the style's brown
    is darker than any such map makes a dark face (figures: README, the learning benchmark)."""
    copy = samples.with_name(samples.name + "_colour_matched")
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(samples, copy)
    match_sample_colours(copy, exemplars)
    return copy


def coverage_table(data_root: Path, calibrated: Path, size: int, skin_tones: bool,
                   source_samples: Path | None = None) -> tuple[list[str], dict[str, dict[str, float]]]:
    model = train_coverage_model(size=size, skin_tones=skin_tones)
    logging.info("coverage classifier held-out accuracy: %s", model.accuracy)

    def load(folder: Path, limit: int = 1000) -> torch.Tensor:
        images = [read_image(p) for p in list_images(folder)[:limit]]
        images = [cv2.resize(im, (size, size), interpolation=cv2.INTER_LINEAR) for im in images]
        return torch.stack([to_tensor(im) for im in images])

    matched = colour_matched_copy(source_samples, data_root / "cartoons") if source_samples is not None else None
    sets = {"photos (training)": data_root / "photos", "G_src samples (stage 1 pretrained)": source_samples,
            "G_src samples colour-matched to the exemplars (ceiling for calibrated samples)": matched,
            "exemplars (training cartoons)": data_root / "cartoons",
            "calibrated samples (kept)": calibrated, "test photos": data_root / "test_photos"}
    sets = {name: folder for name, folder in sets.items() if folder is not None}
    table = {name: model.coverage(load(folder)) for name, folder in sets.items()}
    table["classifier accuracy (held out)"] = model.accuracy
    return model.names, table


def markdown(results: dict[str, dict], coverage: tuple[list[str], dict[str, dict[str, float]]], header: list[str],
             grids: dict[str, str], differences: dict[str, dict[str, dict]] | None = None) -> str:
    def cell(value: dict | None) -> str:
        return "—" if value is None else f"{value['mean']:.4f} [{value['ci_low']:.4f}, {value['ci_high']:.4f}]"

    lines = ["# Learning benchmark (`python benchmarks/learning.py`)", "", *header, ""]
    for name, methods in results.items():
        base = methods["identity"]["paired_l1"]["mean"]
        lines += [f"## Test set: {name} ({methods['identity']['paired_l1']['count']} pairs)", "",
                  "| method | paired L1 ↓ | L1 / input's | paired SSIM ↑ | paired LPIPS ↓ | FID ↓ |", "|---|---|---|---|---|---|"]
        for method, m in methods.items():
            lines.append(f"| {method} | {cell(m.get('paired_l1'))} | {m['paired_l1']['mean'] / base:.2f} | "
                         f"{cell(m.get('paired_ssim'))} | {cell(m.get('paired_lpips'))} | {m.get('fid', float('nan')):.1f} |")
        if differences and name in differences:
            method, other = COMPARED
            lines += ["", f"Paired difference {method} - {other} on the same images (mean, 95 % bootstrap): "
                      + "; ".join(f"{COMPARED_METRICS[k]} {v['mean']:+.4f} [{v['ci_low']:+.4f}, {v['ci_high']:+.4f}]"
                                  for k, v in differences[name].items())]
        lines += ["", f"![{name}]({grids[name]})", ""]
    names, table = coverage
    lines += ["## Attribute coverage (fraction of images showing each attribute)", "",
              "| set | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    lines += [f"| {row} | " + " | ".join(f"{values[n]:.2f}" for n in names) + " |" for row, values in table.items()]
    return "\n".join(lines) + "\n"


def trained_models(cfg) -> tuple[Path, dict[str, Path]]:
    """The calibrated samples and models a previous run of this benchmark left in its ``run_dir``."""
    run_dir = Path(cfg.run_dir)
    models = {"dctnet": run_dir / "ttn" / "ttn.safetensors",
              **{name: run_dir / "ablations" / name / "ttn" / "ttn.safetensors" for name in ("ccn_none", "no_gem")},
              **{name: run_dir / "baselines" / name / MODEL_FILES[name] for name in BASELINES}}
    missing = [str(path) for path in models.values() if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"--score-only needs a finished run: missing {missing}")
    return kept_samples_folder(cfg), models


def _share(share: float | None) -> str:
    return "by image count" if share is None else f"{100 * share:.0f} %"


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    prepare_environment()
    register_configs()
    score_only = "--score-only" in argv
    argv = [a for a in argv if a != "--score-only"]
    # --jobs=N: independent runs N at a time after stage 1 (dctnet/jobs.py; default 2 on a CPU with 2+ cores)
    workers, argv = workers_option(argv)
    start = time.time()
    base = _config(argv, EXPERIMENT)
    run_dir, data_root = Path(base.run_dir), Path(base.data.root)
    ensure_synthetic_data(base)
    attribute = base.data.synthetic.exemplars_without[0]  # the attribute the biased exemplars lack
    sets = test_sets(data_root, run_dir / "benchmark", attribute)
    if score_only:
        calibrated, models = trained_models(base)
    else:
        # CycleGAN sees the images each TTN sees (conf/experiment/demo.yaml) and trains beside stage 1 and the TTNs;
        # this script stylizes its test sets. Toonify projects the first pairs in its own run, after stage 1.
        test_photos = {"cyclegan": "/nonexistent", "toonify": sets[TOONIFY_SET][0]}
        baselines = {b: (train_baseline, (_config([f"baseline={b}", f"data.test_photos={test_photos[b]}", *argv],
                                                  EXPERIMENT),)) for b in BASELINES}
        calibrated, models = train_method_and_ablations(argv, EXPERIMENT, workers=workers, also=baselines)
    trained = time.time() - start
    docs = ROOT / "docs"
    (docs / "learning").mkdir(parents=True, exist_ok=True)
    stylizers = {name: load_baseline(model) if name in BASELINES else load_stylizer(model)
                 for name, model in models.items() if name not in PROJECTING}
    results, grids, projection, differences = {}, {}, {}, {}
    made_how = {**TRAINED_ON, **{b: trained_on(_config([f"baseline={b}", *argv], EXPERIMENT)) for b in BASELINES}}
    for name, (photos, targets) in sets.items():
        slug = name.replace(" ", "_")
        out = run_dir / "benchmark" / slug
        reused = name in (f"with {attribute}", TOONIFY_SET)  # photos of "all": reuse those outputs
        files = list_images(photos)
        methods_here = [m for m in models if m not in PROJECTING or name == TOONIFY_SET]
        for method in methods_here:
            if method in PROJECTING:  # stylized in its own run (train_baseline), beside the other trainings
                projected = copy_projected(run_dir / "stylized" / method, files, out / method)
                projection[name] = projected["projection_error"]
                continue
            if reused:
                shutil.rmtree(out / method, ignore_errors=True)
                (out / method).mkdir(parents=True)
                for photo in files:
                    shutil.copy2(run_dir / "benchmark" / "all" / method / photo.name, out / method / photo.name)
            else:
                started = time.time()
                stylize_folder(stylizers[method], photos, out / method, overwrite=True)
                log.info("%s: %s stylized %d photos in %.0f s", name, method, len(files), time.time() - started)
            write_provenance(out / method, models[method], trained_on=made_how[method])
        methods = [f"++evaluate.methods.{m}={out / m}" for m in methods_here]  # ++: add keys the experiment lacks
        started = time.time()
        scoring = _config([*argv, f"evaluate.sources={photos}", f"evaluate.paired_targets={targets}", *methods,
                           f"evaluate.out_dir={out / 'eval'}", *SCORING], EXPERIMENT)
        # every method of this set is named above; evaluate.py's default would also score the baselines' own
        # outputs in run_dir/stylized (Toonify's: the first pairs only), whatever this set's photos
        OmegaConf.update(scoring, "evaluate.trained_baselines", {}, merge=False)
        report = run_evaluation(scoring)
        log.info("%s: scored in %.0f s", name, time.time() - started)
        results[name] = json.loads((report.parent / "metrics.json").read_text())["methods"]
        if set(COMPARED) <= set(methods_here):
            per_image = read_per_image(report.parent)
            differences[name] = {k: paired_difference(per_image, *COMPARED, k, int(base.evaluate.bootstrap))
                                 for k in COMPARED_METRICS}
        shutil.copy2(report.parent / "grid.png", docs / "learning" / f"{slug}.png")
        grids[name] = f"learning/{slug}.png"
    started = time.time()
    coverage = coverage_table(data_root, calibrated, base.data.size, base.data.synthetic.skin_tones,
                              write_source_samples(base, run_dir / "benchmark" / "g_src_samples"))
    log.info("coverage counted in %.0f s", time.time() - started)
    header = [f"- machine: {machine()}",
              f"- data: `experiment={EXPERIMENT}` (conf/experiment/{EXPERIMENT}.yaml), {base.data.size} px, "
              f"exemplars without {list(base.data.synthetic.exemplars_without)}, "
              f"{'two-skin-tone cartoons, ' if base.data.synthetic.skin_tones else ''}seed {base.seed}, "
              f"data seed {base.data.synthetic.seed}, shifted-set seed {SHIFT_SEED}",
              f"- recipe: stage 1 pretrain {base.ccn.pretrain.steps} + adapt {base.ccn.adapt.steps} iterations, "
              f"TTN {base.ttn.steps} iterations x 3 (dctnet, ccn_none, no_gem), batch {base.ttn.batch_size}, "
              f"exemplars {_share(base.ttn.extra_cartoons_share)} of dctnet's and no_gem's cartoon draws; "
              f"CycleGAN {base.cyclegan.steps} iterations, batch {base.cyclegan.batch_size} (the same images seen); "
              f"Toonify: {base.toonify.latent_space} projection, {base.toonify.steps} steps per photo; "
              f"overrides: {argv or 'none'}",
              "- Toonify's projection error (mean L1 of G_src(latent) to the photo at G's "
              f"{base.ccn.model.size} px, [-1, 1] units): "
              + ", ".join(f"{name} {value:.3f}" for name, value in projection.items()),
              (f"- scored models of an earlier run in {(time.time() - start) / 60:.1f} min (--score-only)" if score_only else
               f"- training {trained / 60:.1f} min, total {(time.time() - start) / 60:.1f} min"),
              "- intervals: 95 % bootstrap over test images; LPIPS and FID use random-weight backbones (no "
              "pretrained weights offline), so compare them only within this table",
              "- grid rows: source photos, identity, cartoon_filter, " + ", ".join(models) + ", paired target",
              f"- {', '.join(sorted(PROJECTING))}: scored on the {TOONIFY_SET} only (it projects each photo into G_src, "
              "which draws aligned faces; minutes per hundred photos)"]
    (docs / "learning.md").write_text(markdown(results, coverage, header, grids, differences))
    print((docs / "learning.md").read_text())


if __name__ == "__main__":
    main(sys.argv[1:])
