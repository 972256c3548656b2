"""Builds the metric networks from the config and runs the evaluation of every method (evaluate.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import lpips
import torch
from omegaconf import DictConfig

from dctnet.checkpoints import load_strict, load_torch_file
from dctnet.config import IdentityConfig, check_known_keys, typed
from dctnet.data.decode import write_image
from dctnet.metrics.evaluate import (
    BUILTIN_BASELINES,
    cartoon_filter,
    identity_embeddings,
    load_folder,
    load_matched,
    score_method,
    source_alignments,
    write_report,
)
from dctnet.metrics.features import build_feature_extractor, weights_only_torch_load
from dctnet.metrics.provenance import describe_provenance
from dctnet.models.face import build_identity_network
from dctnet.seeding import fixed_seed
from dctnet.weights import resolve

log = logging.getLogger(__name__)
LPIPS_ALEX_SLICES = {1: range(0, 2), 2: range(2, 5), 3: range(5, 8), 4: range(8, 10), 5: range(10, 12)}


def build_lpips(pretrained: bool) -> tuple[torch.nn.Module, str]:
    """lpips' AlexNet LPIPS; its linear layers ship in the package, the backbone comes from the registry."""
    # lpips reads its linear layers with a bare torch.load, which TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD would make unsafe
    with fixed_seed(0), weights_only_torch_load():  # a random backbone must be the same in every run
        model = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)
    if not pretrained:
        return model.eval(), "LPIPS-alex (random backbone, seed 0: pretrained=false)"
    path = resolve("alexnet-lpips")
    features = {k[len("features."):]: v for k, v in load_torch_file(path).items() if k.startswith("features.")}
    for index, layers in LPIPS_ALEX_SLICES.items():
        part = {k: v for k, v in features.items() if int(k.split(".")[0]) in layers}
        load_strict(getattr(model.net, f"slice{index}"), part, f"{path} (slice{index})")
    return model.eval(), f"LPIPS-alex ({path.name})"


def run_evaluation(cfg: DictConfig) -> Path:
    check_known_keys(cfg)
    ev = cfg.evaluate
    out_dir = Path(ev.out_dir)
    names, sources = load_folder(ev.sources)
    size = sources.shape[1:3]
    _, reference = load_folder(ev.reference, size=size)
    targets = None
    if ev.paired_targets and Path(ev.paired_targets).is_dir():
        targets = load_matched(ev.paired_targets, names, size)
    features = build_feature_extractor(ev.feature_extractor)
    identity = build_identity_network(typed(cfg.identity, IdentityConfig)) if cfg.identity.network != "none" else None
    perceptual, perceptual_name = build_lpips(ev.lpips_pretrained)
    reference_features = features(reference)
    face_size = int(cfg.identity.input_size)  # faces are aligned to the identity network's input
    alignments = source_alignments(sources, face_size) if identity is not None and ev.align_faces else None
    missing = sum(m is None for m in alignments) if alignments is not None else 0
    source_embeddings = identity_embeddings(sources, identity, alignments, face_size) if identity is not None else None
    methods: dict[str, Path | None] = {}
    for baseline in ev.baselines:
        if baseline not in BUILTIN_BASELINES:
            raise ValueError(f"unknown built-in baseline {baseline!r}; choose from {BUILTIN_BASELINES}")
        methods[baseline] = None
    methods.update({name: Path(folder) for name, folder in ev.methods.items()})
    not_run = []
    for name, folder in ev.trained_baselines.items():
        if name in methods:
            continue
        if Path(folder).is_dir():
            methods[name] = Path(folder)
        else:
            not_run.append(name)
            log.info("baseline %s not scored: %s does not exist (python train_baseline.py baseline=%s)", name, folder, name)
    results, grids = {}, {}
    for method, folder in methods.items():
        if method == "identity":
            outputs = sources
        elif method == "cartoon_filter":
            outputs = sources.copy()
            for k, (name, image) in enumerate(zip(names, sources)):
                outputs[k] = cartoon_filter(image)
                write_image(out_dir / "baselines" / "cartoon_filter" / f"{name}.png", outputs[k])
        else:
            outputs = load_matched(folder, names, size)
        log.info("scoring %s (%d images)", method, len(outputs))
        results[method] = score_method(outputs, sources, reference_features, targets, features, identity, perceptual,
                                       ev.bootstrap, alignments, face_size, source_embeddings)
        grids[method] = outputs
    if targets is not None:
        grids["paired target"] = targets
    header = {"sources": str(ev.sources), "reference cartoons": f"{ev.reference} ({len(reference)} images)",
              "paired targets": str(ev.paired_targets) if targets is not None else "none",
              "FID/KID features": features.name,
              "identity network": identity.name if identity is not None else "none",
              "identity faces": ("MTCNN-aligned; " + f"{missing} of {len(sources)} sources without a detected face "
                                 "(excluded from the mean and counted)") if alignments is not None
              else "fixed central crop (evaluate.align_faces=false)",
              "perceptual network": perceptual_name}
    if not_run:
        header["baselines not run"] = ", ".join(not_run)
    for method, folder in methods.items():
        if folder is not None:
            header[f"{method} made by"] = describe_provenance(folder)
    return write_report(results, header, out_dir, grids, sources, names)
