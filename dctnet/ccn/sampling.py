"""Calibrated sampling: blend G_src and G_cartoon layer-wise, sample, score, filter, write PNG + manifest.

Blending (Toonify-style): the mapping network, the constant input and every synthesis layer up to
``blend_resolution`` come from G_src (pose, face shape: the content), later layers from G_cartoon
(texture, colour: the style). ``blend_width > 0`` replaces the hard switch by a sigmoid over
log2-resolution. Each sample keeps its seed; its identity similarity to the G_src sample with the
same latent and noise, and the cartoon discriminator's score, rank it; the best ``keep_fraction``
(and only those above ``min_identity``) are kept. The official code leaves this to hand-picking.
``noise_strength`` scales the per-pixel noise inputs: G_src learnt to spend them on photo grain, which
the adapted G keeps drawing as speckle on flat cartoon colours; 0 draws without it. ``source_shading > 0``
carries each latent's coarse colours relative to G_src's typical sample into its cartoon
(dctnet/ccn/source_shading.py): adaptation repaints every face in the exemplars' colours.
"""

from __future__ import annotations

import copy
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dctnet.ccn.module import make_noise
from dctnet.ccn.source_shading import SourceShading
from dctnet.config import SamplingConfig
from dctnet.atomic import csv_text, write_text_atomic
from dctnet.data.decode import to_uint8, write_image
from dctnet.models.face import IdentityNet, cosine_similarity
from dctnet.models.stylegan2 import Discriminator, Generator


def layer_resolutions(generator: Generator) -> dict[str, int]:
    """Module-name prefix -> resolution it works at; 0 marks the mapping network and noise buffers."""
    table = {"style.": 0, "input.": 4, "noises.": 0}
    names = {id(m): n for n, m in generator.named_modules()}
    for res, modules in generator.latent_layers():
        for module in modules:
            table[names[id(module)] + "."] = res
    return table


def blend_weight(res: int, resolution: int, width: float) -> float:
    """Share of G_cartoon in a layer at ``res`` px: 0 at or below ``resolution``, 1 above (sigmoid if width>0)."""
    if res == 0:  # mapping network and noise buffers always come from G_src
        return 0.0
    if width <= 0:
        return 0.0 if res <= resolution else 1.0
    return 1.0 / (1.0 + math.exp(-(math.log2(res) - math.log2(resolution) - 0.5) / width))


def blend_generators(source: Generator, cartoon: Generator, resolution: int, width: float = 0.0) -> Generator:
    """A new generator whose layers <= ``resolution`` come from ``source`` and the rest from ``cartoon``."""
    blended = copy.deepcopy(cartoon)
    table = layer_resolutions(cartoon)
    source_state = source.state_dict()
    mixed = {}
    for key, value in cartoon.state_dict().items():
        prefix = max((p for p in table if key.startswith(p)), key=len)
        alpha = blend_weight(table[prefix], resolution, width)
        mixed[key] = torch.lerp(source_state[key], value, alpha) if value.is_floating_point() else value
    blended.load_state_dict(mixed)
    return blended.eval()


def sample_seed(seed: int, index: int) -> int:
    """The seed of sample ``index``'s latent and noise: the same sample whatever the batch size."""
    return seed * 1_000_003 + index


@dataclass
class SampleRecord:
    file: str
    seed: int
    latent_index: int
    identity: float
    d_score: float
    score: float = 0.0
    kept: bool = False
    reason: str = ""


def _zscore(values: np.ndarray) -> np.ndarray:
    spread = values.std()
    return (values - values.mean()) / spread if spread > 1e-12 else np.zeros_like(values)


@torch.no_grad()
def sample_calibrated(
    source: Generator,
    cartoon: Generator,
    discriminator: Discriminator | None,
    identity: IdentityNet | None,
    cfg: SamplingConfig,
    out_dir: str | Path,
    device: torch.device | str = "cpu",
) -> list[SampleRecord]:
    """Write ``out_dir/all/*.png``, ``out_dir/kept/*.png`` and ``out_dir/manifest.csv``; returns the records."""
    out_dir = Path(out_dir)
    for sub in ("all", "kept"):
        shutil.rmtree(out_dir / sub, ignore_errors=True)
    source, cartoon = source.to(device).eval(), cartoon.to(device).eval()
    blended = blend_generators(source, cartoon, cfg.blend_resolution, cfg.blend_width).to(device)
    torch.manual_seed(cfg.seed)
    mean_w = blended.mean_latent(cfg.mean_latents)
    starts = range(0, cfg.count, cfg.batch_size)
    batches = [list(range(start, min(start + cfg.batch_size, cfg.count))) for start in starts]

    def draw(indices: list[int], with_source: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The blended (and, if asked, G_src's) images of these sample indices, each from its own seed."""
        seeds = [sample_seed(cfg.seed, i) for i in indices]
        z = torch.stack([torch.randn(blended.style_dim, generator=torch.Generator().manual_seed(s)) for s in seeds])
        z = z.to(device)
        # each sample's noise from its own seed, as its latent
        per_sample = [make_noise(blended, 1, device, rng=torch.Generator().manual_seed(s)) for s in seeds]
        noise = [torch.cat(maps) * cfg.noise_strength for maps in zip(*per_sample)]
        image = blended([z], truncation=cfg.truncation, truncation_latent=mean_w, noise=noise)[0].clamp(-1, 1)
        if not with_source:
            return image, None
        return image, source([z], truncation=cfg.truncation, truncation_latent=mean_w, noise=noise)[0].clamp(-1, 1)

    shading = None
    if cfg.source_shading > 0:  # a first pass over the same latents: both generators' typical coarse colours
        shading = SourceShading.fit((draw(indices, True) for indices in batches), cfg.source_shading_cells,
                                    cfg.source_shading)
    records: list[SampleRecord] = []
    for indices in batches:
        image, reference = draw(indices, identity is not None or shading is not None)
        if shading is not None:
            image = shading.apply(image, reference)
        if identity is not None:
            similarity = cosine_similarity(identity(image), identity(reference)).cpu().numpy()
        else:
            similarity = np.full(len(indices), np.nan)
        if discriminator is not None:  # a patch D's logits averaged per image (as weighted in its loss)
            d_score = discriminator.score(discriminator(image)).cpu().numpy()
        else:
            d_score = np.zeros(len(indices))
        for k, (i, picture) in enumerate(zip(indices, to_uint8(image))):
            name = f"{i:06d}.png"
            write_image(out_dir / "all" / name, picture)
            records.append(SampleRecord(name, sample_seed(cfg.seed, i), i, float(similarity[k]), float(d_score[k])))
    _filter(records, cfg)
    (out_dir / "kept").mkdir(parents=True, exist_ok=True)
    for record in records:
        if record.kept:
            shutil.copyfile(out_dir / "all" / record.file, out_dir / "kept" / record.file)
    write_text_atomic(out_dir / "manifest.csv", csv_text(list(SampleRecord.__dataclass_fields__),
                                                         [r.__dict__ for r in records], dict_rows=True))
    return records


def _filter(records: list[SampleRecord], cfg: SamplingConfig) -> None:
    """Score = z(identity) + z(discriminator); keep the best fraction, reject low identity outright."""
    identity = np.array([r.identity for r in records])
    d_score = np.array([r.d_score for r in records])
    has_identity = not np.isnan(identity).all()
    score = _zscore(d_score) + (_zscore(np.nan_to_num(identity)) if has_identity else 0)
    keep_count = max(1, int(round(cfg.keep_fraction * len(records))))
    order = np.argsort(-score, kind="stable")
    rank = np.empty(len(records), int)
    rank[order] = np.arange(len(records))
    for k, record in enumerate(records):
        record.score = float(score[k])
        if has_identity and record.identity < cfg.min_identity:
            record.reason = f"identity {record.identity:.3f} < min_identity {cfg.min_identity}"
        elif rank[k] >= keep_count:
            record.reason = f"score rank {rank[k] + 1} outside the best {keep_count}"
        else:
            record.kept, record.reason = True, "kept"
