"""Typed configuration schema for every entry point (Hydra structured configs).

The YAML files under ``conf/`` fill these dataclasses; because the schema is registered first in each
primary config's defaults list, a misspelt key or a wrong type fails at start with Hydra's message
naming the key (``Key 'max_stepz' not in 'TrainerConfig'``). Every hyper-parameter lives here or in
``conf/``: the code reads them, it never invents defaults of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class SynthConfig:
    """Procedural two-domain data generated under ``data.root`` when it is absent."""

    generate: bool = True
    size: int = 64
    photos: int = 200
    cartoons: int = 100
    test: int = 16
    seed: int = 0
    exemplars_without: list[str] = field(default_factory=list)  # biased style set: attributes no cartoon has


@dataclass
class GemConfig:
    """Geometry expansion (non-trainable augmentation). Defaults follow the official scripts."""

    enabled: bool = True
    flip_p: float = 0.5
    scale_p: float = 0.5  # probability of a scale change (never combined with rotation)
    shrink_min: float = 0.8  # shrink factor range (the common case) ...
    shrink_max: float = 1.0
    zoom_p: float = 0.1  # ... and the share of scale changes that zoom in instead
    zoom_max: float = 1.1
    rotate_p: float = 0.5
    rotate_limit: float = 10.0  # degrees
    translate_p: float = 0.5
    translate: float = 0.05  # fraction of the side, both axes
    border: str = "reflect"  # reflect | replicate | constant (constant uses fill)
    fill: int = 255  # white canvas for 'constant', as the official shrink


@dataclass
class DataConfig:
    """Image folders and loading. ``photos``/``cartoons`` are the two unpaired training domains."""

    root: str = "data/synthetic"
    photos: str = "${data.root}/photos"
    cartoons: str = "${data.root}/cartoons"
    test_photos: str = "${data.root}/test_photos"
    test_cartoons: str = "${data.root}/test_cartoons"
    size: int = 64
    num_workers: int = 0
    max_pixels: int = 100_000_000
    cache: bool = True  # keep decoded, resized images in memory (small style sets)
    max_images: Optional[int] = None  # use only the first N images of each folder (few-shot studies)
    synthetic: SynthConfig = field(default_factory=SynthConfig)
    gem: GemConfig = field(default_factory=GemConfig)


@dataclass
class DivergenceConfig:
    """What a run does when training blows up (non-finite values, or a discriminator loss past ``max_d_loss``).

    ``rollback`` reloads the last good ``last.ckpt`` and continues with every learning rate multiplied by
    ``lr_factor``, at most ``max_rollbacks`` times; ``stop`` (or no checkpoint to return to) ends the run with
    an error. Either way no export is written from a diverged model.
    """

    action: str = "rollback"  # rollback | stop
    max_d_loss: float = 100.0  # LSGAN / logistic D losses are O(1) while training is healthy
    max_rollbacks: int = 2
    lr_factor: float = 0.5


@dataclass
class TrainerConfig:
    """Passed to ``pytorch_lightning.Trainer``. ``max_steps`` counts training *iterations*.

    One iteration = one discriminator and one generator update; Lightning's own ``global_step``
    advances once per optimiser, so the code converts. ``None`` keeps each stage's own length.
    """

    accelerator: str = "auto"
    devices: Any = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    max_steps: Optional[int] = None
    log_every_n_steps: int = 10
    checkpoint_every: int = 100  # iterations between `last.ckpt` writes
    sample_every: int = 100  # iterations between sample grids
    preview_count: int = 8  # images per progress grid: fixed latents (stage 1) or the first test photos (stage 2)
    preview_seed: int = 1234  # seed of stage 1's fixed preview latents
    deterministic: bool = False
    enable_progress_bar: bool = True
    fast_dev_run: bool = False
    gradient_clip_val: Optional[float] = None
    divergence: DivergenceConfig = field(default_factory=DivergenceConfig)


@dataclass
class StyleGANConfig:
    """rosinality-compatible StyleGAN2 shape (constructor arguments of that project + width cap)."""

    size: int = 64
    style_dim: int = 512
    n_mlp: int = 8
    channel_multiplier: int = 2
    channel_max: Optional[int] = None  # cap on channels; None = rosinality exactly; tiny CPU models set 32-64
    lr_mlp: float = 0.01


@dataclass
class IdentityConfig:
    """Face-identity network (facenet-pytorch InceptionResnetV1) used by losses and metrics."""

    network: str = "facenet"  # facenet | none
    pretrained: bool = True  # False: random init (tests only); True: weights file must exist
    weights: Optional[str] = None  # explicit path; default: the registry path (`dctnet weights`)
    crop: list[float] = field(default_factory=lambda: [0.137, 0.125, 0.871, 0.859])  # x0,y0,x1,y1
    input_size: int = 160


@dataclass
class CCNStageConfig:
    """One stage-1 training stage (pretrain from scratch, or few-shot adapt)."""

    steps: int = 1500
    batch_size: int = 8
    lr: float = 0.002
    betas: list[float] = field(default_factory=lambda: [0.0, 0.99])  # StyleGAN2's Adam (beta1 0)
    r1: float = 10.0
    r1_every: int = 16
    path_length: float = 2.0
    path_every: int = 4
    path_batch_shrink: int = 2
    mixing: float = 0.9
    ema_half_life_kimg: float = 10.0
    ema_rampup: Optional[float] = 0.05  # half-life <= rampup * images seen (StyleGAN2-ADA); null = off
    diffaugment: list[str] = field(default_factory=list)  # DiffAugment policies: color, translation, cutout
    identity_weight: float = 0.0  # differentiable identity loss G_cartoon(w) vs G_src(w)
    # parameter-name prefixes or glob patterns kept fixed, e.g. ["style."] or ["*noise.weight"]
    freeze: list[str] = field(default_factory=list)
    flip: bool = True


@dataclass
class SamplingConfig:
    """Calibrated sampling: blend G_src and G_cartoon, sample, score, filter, write PNG + manifest."""

    count: int = 5000
    batch_size: int = 16
    truncation: float = 0.7
    mean_latents: int = 4096
    blend_resolution: int = 4  # layers up to this resolution come from G_src (Toonify-style)
    blend_width: float = 0.0  # 0 = hard switch; >0 = smooth sigmoid transition over log2-resolutions
    keep_fraction: float = 0.8
    min_identity: float = -1.0  # also reject samples whose identity similarity is below this
    seed: int = 0


@dataclass
class CCNConfig:
    """Stage 1: which stages run, the StyleGAN2 shape, and each stage's recipe."""

    stages: list[str] = field(default_factory=lambda: ["pretrain", "adapt", "sample"])
    source_checkpoint: Optional[str] = None  # G_src: rosinality .pt or our ccn.safetensors
    # Pretrained G_src exports are kept here, keyed by model, pretrain recipe, photos and seed, and reused by
    # later runs instead of pretraining again (as a user reuses the FFHQ checkpoint); null = always pretrain.
    source_cache: Optional[str] = "${oc.env:DCTNET_CACHE,${oc.env:HOME}/.cache/dctnet}/g_src"
    model: StyleGANConfig = field(default_factory=StyleGANConfig)
    pretrain: CCNStageConfig = field(default_factory=CCNStageConfig)
    adapt: CCNStageConfig = field(default_factory=CCNStageConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)


@dataclass
class UNetConfig:
    """TTN generator; defaults are the official DCT-Net / White-box architecture (≈1.47 M params)."""

    base_channels: int = 32
    num_residual: int = 4
    num_downsamples: int = 2
    output_guided_filter: bool = True  # guided-filter the output with the input as guide (official post-filter)
    guided_filter_radius: int = 1
    guided_filter_eps: float = 1e-2


@dataclass
class DiscriminatorConfig:
    """Spectral-norm PatchGAN used for both the surface and the texture representation."""

    channels: list[int] = field(default_factory=lambda: [32, 64, 128])


@dataclass
class FacePerceptionConfig:
    """Facial perception loss: keep the output's facial expression equal to the input's."""

    kind: str = "expression"  # expression | identity | none
    weight: float = 1.0  # the attribute regressor trains with the discriminators (ttn.lr_d)


@dataclass
class TTNLossConfig:
    """Loss weights; `official` = ModelScope trainer, `port` = the MIT PyTorch port (surface/texture 2)."""

    recipe: str = "port"
    gan: str = "lsgan"  # lsgan | hinge
    surface: float = 2.0
    texture: float = 2.0
    image: float = 0.0  # style discriminator on the output itself (the paper's L_sty); 0 = off, as official
    content: float = 200.0
    content_norm: str = "none"  # none (official) | instance: compare layout, not per-channel feature levels
    superpixel: float = 0.0  # L1 between the output and its superpixel mean-colour image (flat regions)
    superpixel_segments: int = 200  # the official seg_num at 256 px
    tv: float = 10000.0
    surface_radius: int = 5
    surface_eps: float = 0.2
    vgg_layer: str = "conv4_4"
    vgg_pretrained: bool = True
    vgg_weights: Optional[str] = None
    face: FacePerceptionConfig = field(default_factory=FacePerceptionConfig)


@dataclass
class TTNConfig:
    """Stage 2: U-Net, discriminators, losses and optimiser. ``cartoons`` overrides data.cartoons."""

    cartoons: Optional[str] = None  # e.g. the calibrated samples of stage 1
    # Real strokes for the texture discriminator: e.g. ${data.cartoons} (the exemplars themselves) when the
    # calibrated samples are generated below the training size and so have blurred lines. null = ``cartoons``.
    texture_cartoons: Optional[str] = None
    # More cartoon folders merged into the training domain, e.g. [${data.cartoons}] beside calibrated samples
    # that stage 1 could only draw crudely (the CPU demo): exemplars anchor the style, samples add content.
    extra_cartoons: list[str] = field(default_factory=list)
    steps: int = 3000
    batch_size: int = 8
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: list[float] = field(default_factory=lambda: [0.5, 0.99])
    ema_half_life_kimg: float = 10.0
    ema_rampup: Optional[float] = 0.05
    warmup_steps: int = 0  # first iterations train G on L1 reconstruction only (White-box pretraining)
    model: UNetConfig = field(default_factory=UNetConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    loss: TTNLossConfig = field(default_factory=TTNLossConfig)


@dataclass
class CycleGANConfig:
    """CycleGAN baseline (schema only: the values live in conf/cyclegan/*.yaml, the reference's in default.yaml)."""

    steps: int = MISSING
    batch_size: int = MISSING
    lr: float = MISSING
    betas: list[float] = MISSING
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
    vgg_weights: Optional[str] = None
    noise_seed: int = MISSING  # fixed synthesis noise: projection optimises the latent only
    mean_latents: int = MISSING  # mapped samples averaged for the starting W


@dataclass
class EvalConfig:
    """evaluate.py: which folders to compare and which metrics to compute."""

    methods: dict[str, str] = field(default_factory=dict)  # name -> folder of stylized outputs
    sources: str = "${data.test_photos}"
    reference: str = "${data.cartoons}"
    paired_targets: Optional[str] = "${data.test_cartoons}"
    out_dir: str = "${run_dir}/eval"
    feature_extractor: str = "inception"  # inception | random (tests; the report says so)
    align_faces: bool = True  # identity on MTCNN-aligned faces; sources without a face are counted, not dropped
    lpips_pretrained: bool = True  # LPIPS AlexNet backbone from the registry; false = random (tests)
    baselines: list[str] = field(default_factory=lambda: ["identity", "cartoon_filter"])
    # Trained baselines (train_baseline.py): scored beside ``methods`` when their folder exists, else listed as not run
    trained_baselines: dict[str, str] = field(default_factory=lambda: {
        "cyclegan": "${run_dir}/stylized/cyclegan", "toonify": "${run_dir}/stylized/toonify"})
    bootstrap: int = 1000


@dataclass
class RunConfig:
    """Primary schema of ``train_ccn.py``, ``train_ttn.py`` and ``evaluate.py`` (one config tree)."""

    name: str = "dctnet"
    run_dir: str = "outputs/${name}"
    seed: int = 0
    resume: str = "auto"  # auto (continue last.ckpt if present, same recipe) | force (even if changed) | never | <.ckpt>
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: Any = None
    identity: IdentityConfig = field(default_factory=IdentityConfig)
    ccn: CCNConfig = field(default_factory=CCNConfig)
    ttn: TTNConfig = field(default_factory=TTNConfig)
    evaluate: EvalConfig = field(default_factory=EvalConfig)
    baseline: str = "cyclegan"  # train_baseline.py: cyclegan | toonify
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


def register_configs() -> None:
    """Register the schema so that ``conf/*.yaml`` can name it first in their defaults list."""
    ConfigStore.instance().store(name="run_schema", node=RunConfig)
