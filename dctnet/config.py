"""Typed configuration schema for every entry point (Hydra structured configs).

The YAML files under ``conf/`` fill these dataclasses; because the schema is registered first in each
primary config's defaults list, a misspelt key or a wrong type fails at start with Hydra's message
naming the key (``Key 'max_stepz' not in 'TrainerConfig'``). The dataclasses are the schema only: every
value lives once, in ``conf/`` (``MISSING`` here), and the code reads it from there, never from a default of
its own. ``tests/test_config.py`` checks that every composed config fills every key and that no experiment
restates a value it would inherit. Tests and scripts build nodes with :func:`config_node`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, TypeVar

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class SynthConfig:
    """Procedural two-domain data generated under ``data.root`` when it is absent."""

    generate: bool = MISSING
    size: int = MISSING
    photos: int = MISSING
    cartoons: int = MISSING
    test: int = MISSING
    seed: int = MISSING
    exemplars_without: list[str] = MISSING  # biased style set: attributes no cartoon has
    exemplars_keep: float = MISSING  # > 0: those attributes are rare instead of absent (kept with this probability)
    skin_tones: bool = MISSING  # cartoons draw skin in two flat tones (brown, peach) instead of the photo's palette


@dataclass
class GemConfig:
    """Geometry expansion (non-trainable augmentation). Defaults follow the official scripts."""

    enabled: bool = MISSING
    flip_p: float = MISSING
    scale_p: float = MISSING  # probability of a scale change (never combined with rotation)
    shrink_min: float = MISSING  # shrink factor range (the common case) ...
    shrink_max: float = MISSING
    zoom_p: float = MISSING  # ... and the share of scale changes that zoom in instead
    zoom_max: float = MISSING
    rotate_p: float = MISSING
    rotate_limit: float = MISSING  # degrees
    translate_p: float = MISSING
    translate: float = MISSING  # fraction of the side, both axes
    border: str = MISSING  # reflect | replicate | constant (constant uses fill)
    fill: int = MISSING  # white canvas for 'constant', as the official shrink


@dataclass
class LoaderConfig:
    """The data module every stage builds with ``hydra.utils.instantiate`` (``dctnet.training.gan_datamodule`` adds
    the stage's domains, size, batch size, seed, length and GEM). Typed here so a misspelt key is refused."""

    _target_: str = MISSING  # dctnet.data.datamodule.GANDataModule or a subclass
    num_workers: int = MISSING
    max_pixels: int = MISSING  # larger images are refused as decompression bombs
    cache: bool = MISSING  # keep decoded, resized images in memory (small style sets)
    max_images: Optional[int] = MISSING  # use only the first N images of each folder (few-shot studies)


@dataclass
class DataConfig:
    """Image folders and loading. ``photos``/``cartoons`` are the two unpaired training domains."""

    root: str = MISSING
    photos: str = MISSING
    cartoons: str = MISSING
    test_photos: str = MISSING
    test_cartoons: str = MISSING
    size: int = MISSING
    loader: LoaderConfig = field(default_factory=LoaderConfig)
    synthetic: SynthConfig = field(default_factory=SynthConfig)
    gem: GemConfig = field(default_factory=GemConfig)


@dataclass
class DivergenceConfig:
    """What a run does when training blows up (non-finite values, or a discriminator loss past ``max_d_loss``).

    ``rollback`` reloads the last good ``last.ckpt`` and continues with every learning rate multiplied by
    ``lr_factor``, at most ``max_rollbacks`` times; ``stop`` (or no checkpoint to return to) ends the run with
    an error. Either way no export is written from a diverged model.
    """

    action: str = MISSING  # rollback | stop
    max_d_loss: float = MISSING  # LSGAN / logistic D losses are O(1) while training is healthy
    max_rollbacks: int = MISSING
    lr_factor: float = MISSING


@dataclass
class TrainerConfig:
    """Built by ``hydra.utils.instantiate`` (``_target_``), minus the keys ``dctnet.training.OWN_TRAINER_KEYS``.

    ``max_steps`` counts training *iterations*: one discriminator and one generator update; Lightning's own
    ``global_step`` advances once per optimiser, so the code converts. ``None`` keeps each stage's own length.
    """

    _target_: str = MISSING
    accelerator: str = MISSING
    devices: Any = MISSING
    num_nodes: int = MISSING
    strategy: str = MISSING
    precision: str = MISSING
    max_steps: Optional[int] = MISSING
    log_every_n_steps: int = MISSING
    checkpoint_every: int = MISSING  # iterations between `last.ckpt` writes
    sample_every: int = MISSING  # iterations between sample grids
    preview_count: int = MISSING  # images per progress grid: fixed latents (stage 1) or the first test photos (stage 2)
    preview_seed: int = MISSING  # seed of stage 1's fixed preview latents
    deterministic: bool = MISSING
    enable_progress_bar: bool = MISSING
    fast_dev_run: bool = MISSING
    gradient_clip_val: Optional[float] = MISSING
    divergence: DivergenceConfig = field(default_factory=DivergenceConfig)


@dataclass
class StyleGANConfig:
    """rosinality-compatible StyleGAN2 shape (constructor arguments of that project + width cap)."""

    size: int = MISSING
    style_dim: int = MISSING
    n_mlp: int = MISSING
    channel_multiplier: int = MISSING
    channel_max: Optional[int] = MISSING  # cap on channels; None = rosinality exactly; tiny CPU models set 32-64
    lr_mlp: float = MISSING


@dataclass
class IdentityConfig:
    """Face-identity network (facenet-pytorch InceptionResnetV1) used by losses and metrics."""

    network: str = MISSING  # facenet | none
    pretrained: bool = MISSING  # False: random init (tests only); True: weights file must exist
    weights: Optional[str] = MISSING  # explicit path; default: the registry path (`dctnet weights`)
    crop: list[float] = MISSING  # x0,y0,x1,y1
    input_size: int = MISSING


@dataclass
class CCNStageConfig:
    """One stage-1 training stage (pretrain from scratch, or few-shot adapt)."""

    steps: int = MISSING
    batch_size: int = MISSING
    lr: float = MISSING
    # the D and G optimisers, each built by hydra.utils.instantiate with its params and ``lr`` (conf: Adam, beta1 0)
    optimizer: dict[str, Any] = MISSING
    r1: float = MISSING
    r1_every: int = MISSING
    path_length: float = MISSING
    path_every: int = MISSING
    path_batch_shrink: int = MISSING
    mixing: float = MISSING
    ema_half_life_kimg: float = MISSING
    ema_rampup: Optional[float] = MISSING  # half-life <= rampup * images seen (StyleGAN2-ADA); null = off
    diffaugment: list[str] = MISSING  # DiffAugment policies: color, translation, cutout
    identity_weight: float = MISSING  # differentiable identity loss G_cartoon(w) vs G_src(w)
    # G_cartoon's coarse colours must stay one affine colour map of G_src's (dctnet/losses/colour_layout.py)
    colour_layout_weight: float = MISSING
    colour_layout_cells: int = MISSING  # cells per side of the coarse colour grid that loss compares
    # which cells of G_cartoon(w) look alike must stay as in G_src(w) (dctnet/losses/self_similarity.py)
    self_similarity_weight: float = MISSING
    self_similarity_cells: int = MISSING  # cells per side of the grid whose pairwise colour distances it compares
    # parameter-name prefixes or glob patterns kept fixed, e.g. ["style."] or ["*noise.weight"]
    freeze: list[str] = MISSING
    # D judges r x r patches (logits of its r px feature map), not whole images; 0 = whole images
    patch_discriminator: int = MISSING
    # with patch_discriminator: share of the whole-image logit in D's per-image score (0 = patches only)
    patch_image_weight: float = MISSING
    flip: bool = MISSING


@dataclass
class SamplingConfig:
    """Calibrated sampling: blend G_src and G_cartoon, sample, score, filter, write PNG + manifest."""

    count: int = MISSING
    batch_size: int = MISSING
    truncation: float = MISSING
    mean_latents: int = MISSING
    blend_resolution: int = MISSING  # layers up to this resolution come from G_src (Toonify-style)
    blend_width: float = MISSING  # 0 = hard switch; >0 = smooth sigmoid transition over log2-resolutions
    keep_fraction: float = MISSING
    min_identity: float = MISSING  # also reject samples whose identity similarity is below this
    noise_strength: float = MISSING  # scale of StyleGAN2's per-pixel noise inputs when sampling (0 = none)
    match_colours: bool = MISSING  # one linear colour map gives the kept samples the exemplars' colour statistics
    # Each sample takes G_src's coarse colours relative to G_src's typical (median) sample, on a source_shading_cells
    # grid (0 = off, 1 = all of it; dctnet/ccn/source_shading.py)
    source_shading: float = MISSING
    source_shading_cells: int = MISSING
    seed: int = MISSING


@dataclass
class CCNConfig:
    """Stage 1: which stages run, the StyleGAN2 shape, and each stage's recipe."""

    stages: list[str] = MISSING
    source_checkpoint: Optional[str] = MISSING  # G_src: rosinality .pt or our ccn.safetensors
    # Pretrained G_src exports are kept here, keyed by model, pretrain recipe, photos and seed, and reused by
    # later runs instead of pretraining again (as a user reuses the FFHQ checkpoint); null = always pretrain.
    source_cache: Optional[str] = MISSING
    model: StyleGANConfig = field(default_factory=StyleGANConfig)
    pretrain: CCNStageConfig = field(default_factory=CCNStageConfig)
    adapt: CCNStageConfig = field(default_factory=CCNStageConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)


@dataclass
class UNetConfig:
    """TTN generator; defaults are the official DCT-Net / White-box architecture (≈1.47 M params)."""

    _target_: str = MISSING  # dctnet.models.unet.TTN: the node is built by hydra.utils.instantiate
    base_channels: int = MISSING
    num_residual: int = MISSING
    num_downsamples: int = MISSING
    output_guided_filter: bool = MISSING  # guided-filter the output with the input as guide (official post-filter)
    guided_filter_radius: int = MISSING
    guided_filter_eps: float = MISSING


@dataclass
class DiscriminatorConfig:
    """Spectral-norm PatchGAN used for both the surface and the texture representation."""

    _target_: str = MISSING  # built by hydra.utils.instantiate with ``in_channels`` (3 surface/image, 1 texture)
    channels: list[int] = MISSING


@dataclass
class FacePerceptionConfig:
    """Facial perception loss: keep the output's facial expression equal to the input's."""

    kind: str = MISSING  # expression | identity | none
    weight: float = MISSING  # the attribute regressor trains with the discriminators (ttn.lr_d)
    # expression labels of photo folders without an attributes.csv (dctnet/data/expression.py)
    eye_open_ratio: float = MISSING
    mouth_open_ratio: float = MISSING
    landmark_weights: Optional[str] = MISSING


@dataclass
class TTNLossConfig:
    """Loss weights; `official` = ModelScope trainer, `port` = the MIT PyTorch port (surface/texture 2)."""

    recipe: str = MISSING
    gan: str = MISSING  # lsgan | hinge
    surface: float = MISSING
    texture: float = MISSING
    image: float = MISSING  # style discriminator on the output itself (the paper's L_sty); 0 = off, as official
    content: float = MISSING
    content_norm: str = MISSING  # none (official) | instance: compare layout, not per-channel feature levels
    superpixel: float = MISSING  # L1 between the output and its superpixel mean-colour image (flat regions)
    superpixel_segments: int = MISSING  # the official seg_num at 256 px
    self_similarity: float = MISSING  # output's cell-colour self-similarity must match the photo's; 0 = off
    self_similarity_cells: int = MISSING  # cells per side of that comparison
    tv: float = MISSING
    surface_radius: int = MISSING
    surface_eps: float = MISSING
    vgg_layer: str = MISSING
    vgg_pretrained: bool = MISSING
    vgg_weights: Optional[str] = MISSING
    face: FacePerceptionConfig = field(default_factory=FacePerceptionConfig)


@dataclass
class TTNConfig:
    """Stage 2: U-Net, discriminators, losses and optimiser. ``cartoons`` overrides data.cartoons."""

    cartoons: Optional[str] = MISSING  # e.g. the calibrated samples of stage 1
    # Real strokes for the texture discriminator: e.g. ${data.cartoons} (the exemplars themselves) when the
    # calibrated samples are generated below the training size and so have blurred lines. null = ``cartoons``.
    texture_cartoons: Optional[str] = MISSING
    # More cartoon folders merged into the training domain, e.g. [${data.cartoons}] beside calibrated samples
    # that stage 1 could only draw crudely (the CPU demo): exemplars anchor the style, samples add content.
    extra_cartoons: list[str] = MISSING
    extra_cartoons_share: Optional[float] = MISSING  # share of cartoon draws from extra_cartoons; null = by count
    steps: int = MISSING
    batch_size: int = MISSING
    lr_g: float = MISSING
    lr_d: float = MISSING
    optimizer: dict[str, Any] = MISSING  # built by hydra.utils.instantiate for G (lr_g) and the discriminators (lr_d)
    lr_decay_from: Optional[float] = MISSING  # fraction of the run after which both lrs decay linearly to 0
    ema_half_life_kimg: float = MISSING
    ema_rampup: Optional[float] = MISSING
    warmup_steps: int = MISSING
    init_from: Optional[str] = MISSING  # a ttn.safetensors to start from (fine-tuning a similar style)
    init_from_d_steps: int = MISSING  # fine-tuning: discriminators alone first
    init_from_lr_ramp: int = MISSING  # fine-tuning: G's learning rate ramps up over this many iterations
    model: UNetConfig = field(default_factory=UNetConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    loss: TTNLossConfig = field(default_factory=TTNLossConfig)


@dataclass
class CycleGANConfig:
    """CycleGAN baseline (schema only: the values live in conf/cyclegan/*.yaml, the reference's in default.yaml)."""

    steps: int = MISSING
    batch_size: int = MISSING
    lr: float = MISSING
    optimizer: dict[str, Any] = MISSING  # built by hydra.utils.instantiate for the Gs and the Ds, each with ``lr``
    decay_from: float = MISSING  # fraction of the run after which the lr decays linearly to 0
    ngf: int = MISSING
    ndf: int = MISSING
    blocks: int = MISSING
    downsamples: int = MISSING
    d_layers: int = MISSING
    cycle: float = MISSING  # lambda_A = lambda_B
    identity: float = MISSING  # lambda_identity, relative to ``cycle``
    pool_size: int = MISSING
    init_gain: float = MISSING


@dataclass
class ToonifyConfig:
    """Toonify baseline: W+ projection into G_src, then the layer-blended generator (conf/toonify/*.yaml)."""

    steps: int = MISSING  # Adam steps per batch of photos
    lr: float = MISSING
    batch_size: int = MISSING
    latent_space: str = MISSING  # w | w_plus
    pixel: float = MISSING  # weight of the L1 pixel term
    perceptual: float = MISSING  # weight of the VGG feature term (0 = off)
    vgg_layer: str = MISSING
    vgg_pretrained: bool = MISSING  # false offline: random features, said in the report
    vgg_weights: Optional[str] = MISSING
    noise_seed: int = MISSING  # fixed synthesis noise: projection optimises the latent only
    mean_latents: int = MISSING  # mapped samples averaged for the starting W
    precision: str = MISSING  # projection numerics, trainer.precision's values: bf16 (auto: where the device has it) or fp32


@dataclass
class EvalConfig:
    """evaluate.py: which folders to compare and which metrics to compute."""

    methods: dict[str, str] = MISSING  # name -> folder of stylized outputs
    sources: str = MISSING
    reference: str = MISSING
    paired_targets: Optional[str] = MISSING
    out_dir: str = MISSING
    feature_extractor: str = MISSING  # inception | random (tests; the report says so)
    align_faces: bool = MISSING  # identity on MTCNN-aligned faces; sources without a face are counted, not dropped
    lpips_pretrained: bool = MISSING  # LPIPS AlexNet backbone from the registry; false = random (tests)
    baselines: list[str] = MISSING
    # Trained baselines (train_baseline.py): scored beside ``methods`` when their folder exists, else listed as not run
    trained_baselines: dict[str, str] = MISSING
    bootstrap: int = MISSING


@dataclass
class RunConfig:
    """Primary schema of ``train_ccn.py``, ``train_ttn.py`` and ``evaluate.py`` (one config tree)."""

    name: str = MISSING
    run_dir: str = MISSING
    seed: int = MISSING
    resume: str = MISSING  # auto (continue last.ckpt if present, same recipe) | force (even if changed) | never | <.ckpt>
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: Any = None
    identity: IdentityConfig = field(default_factory=IdentityConfig)
    ccn: CCNConfig = field(default_factory=CCNConfig)
    ttn: TTNConfig = field(default_factory=TTNConfig)
    evaluate: EvalConfig = field(default_factory=EvalConfig)
    baseline: str = MISSING  # train_baseline.py: cyclegan | toonify
    cyclegan: CycleGANConfig = field(default_factory=CycleGANConfig)
    toonify: ToonifyConfig = field(default_factory=ToonifyConfig)
    experiment: Any = None


def typed(node: Any, schema: type) -> Any:
    """The dataclass instance behind a structured config node (nested dataclasses included)."""
    from omegaconf import OmegaConf

    value = OmegaConf.to_object(node)
    if not isinstance(value, schema):
        raise TypeError(f"expected a {schema.__name__} config node, got {type(value).__name__}")
    return value


def check_known_keys(cfg: Any) -> None:
    """Every key of ``cfg`` exists in the schema: ``+ttn.unknwon=1`` is refused like ``ttn.unknwon=1`` is.

    Hydra's ``+`` appends to a structured node without complaint, so a misspelt key would change nothing.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import ConfigKeyError

    schema = OmegaConf.structured(RunConfig)
    try:
        OmegaConf.merge(schema, OmegaConf.to_container(cfg, resolve=False))
    except ConfigKeyError as error:
        raise ValueError(f"unknown config key {error.full_key!r}: it is not in the schema (dctnet/config.py), "
                         "so it would change nothing. Check the spelling.") from None


T = TypeVar("T")
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def config_node(path: str, schema: type[T], overrides: Sequence[str] = (), **fields: Any) -> T:
    """The ``path`` node (e.g. ``"ttn.loss"``) of the composed default config as ``schema``, after Hydra
    ``overrides`` (e.g. ``["ttn/loss=official"]``), with ``fields`` replaced: the values come from ``conf/``,
    as a run's do, for tests and scripts that build one part on its own."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    register_configs()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(config_name="base", overrides=list(overrides))
    return dataclasses.replace(typed(OmegaConf.select(cfg, path), schema), **fields)


def register_configs() -> None:
    """Register the schema so that ``conf/*.yaml`` can name it first in their defaults list."""
    ConfigStore.instance().store(name="run_schema", node=RunConfig)
