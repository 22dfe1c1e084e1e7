"""Training configuration: one flat dataclass, presets per stage, files and CLI overrides.

Precedence, lowest first: the dataclass defaults, the preset, the config file
(JSON or TOML with the same keys), then command-line flags.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

from cascade_core import (
    AugmentConfig,
    CascadeError,
    ScheduleConfig,
    StageConfig,
    TextConfig,
    UNetConfig,
)

from .options import INT_LIST, RunConfig, check_options, option


@dataclass
class TrainConfig(RunConfig):
    """Everything a stage1/2/3 run needs; the shared fields come from RunConfig."""

    # what and where
    preset: str = option("tiny",
                         "model/optimizer size: tiny (CPU minute), small (shipped cascade), base "
                         "(paper, GPU)", choices=("tiny", "small", "base"))
    role: str = option("base", "base | sr | refiner (set by the entry point)",
                       choices=("base", "sr", "refiner"))
    name: str = option("", "stage name stored in the checkpoint")
    resolution: int = option(16, "output resolution of the stage", min=1, max=65536)
    low_res: int = option(0, "low-resolution input size (sr stages)", min=0, max=65536)
    crop: int = option(0, "train sr/refiner stages on random crops of this size (0 = whole image)",
                       min=0, max=65536)
    crop_fraction: float = option(1.0, "with --crop: the fraction of optimizer steps trained on "
                                  "crops; the other steps see whole images", min=0, max=1)
    # text conditioning (train.captions)
    captions: str = option("", "a JSON Lines file with one {\"image\": ..., \"caption\": ...} per "
                               "training image: trains a text-conditioned stage (needs "
                               "--text-encoder)")
    text_encoder: str = option("", "the T5 encoder the captions are encoded with: a .safetensors "
                                   "file with spiece.model beside it, or a text_encoder folder "
                                   "(encoded once, cached in --out)")
    caption_dropout: float = option(0.1, "fraction of captions replaced by the empty caption (for "
                                         "guidance)", min=0, max=1)
    # run length and batch
    steps: int = option(1000, "optimizer steps", min=1, max=10 ** 9)
    grad_accum: int = option(1, "micro-batches per optimizer step", min=1, max=65536)
    # optimizer
    weight_decay: float = option(0.0, "AdamW weight decay", min=0)
    warmup: int = option(200, "linear learning-rate warmup steps", min=0)
    lr_decay: str = option("cosine", "cosine | linear | constant decay after warmup",
                           choices=("cosine", "linear", "constant"))
    min_lr_ratio: float = option(0.1, "final learning rate as a fraction of the peak", min=0, max=1)
    grad_clip: float = option(1.0, "max gradient norm (0 = off)", min=0)
    ema_decay: float = option(0.999,
                              "EMA decay (0.9999 is for runs of hundreds of thousands of steps)",
                              min=0, lt=1)
    ema_warmup: float = option(10.0, "EMA warmup: decay_t = min(decay, (1+n)/(warmup+n))", min=0)
    # data augmentation
    flip: bool = option(True, "random horizontal flips")
    deblock: float = option(0.0, "soften JPEG's 8 px block grid in each training image, by this "
                                 "amount of its own excess at block edges (0.6 flattens "
                                 "CIFAR-10's; 0 = off), so SR stages do not learn to draw it",
                            min=0, max=1)
    shift: int = option(0, "move each training image by 0..N pixels right and down (reflected "
                           "into the gap), so a grid of the stored images (JPEG's 8 px blocks) "
                           "is not at a fixed distance from the border; 0 = off", min=0, max=64)
    # diffusion and architecture (presets fill these)
    base_channels: int = option(32, "U-Net base channels", min=1, max=8192)
    channel_mult: str = option("1,2,2", "U-Net channel multipliers per level", pattern=INT_LIST,
                               what="comma-separated integers")
    num_res_blocks: int = option(2, "residual blocks per level", min=1, max=64)
    attention_resolutions: str = option("8",
                                        "feature-map sizes with attention (comma-separated, '' for "
                                        "none)", pattern=INT_LIST, empty=True,
                                        what="comma-separated integers or nothing")
    num_heads: int = option(4, "attention heads", min=1, max=1024)
    dropout: float = option(0.0, "dropout in residual blocks", min=0, lt=1)
    schedule: str = option("cosine", "linear | cosine beta schedule", choices=("linear", "cosine"))
    timesteps: int = option(1000, "training timesteps T", min=2, max=100_000)
    parameterization: str = option("eps", "eps | v | x0", choices=("eps", "v", "x0"))
    learn_sigma: bool = option(False, "learn variances with the hybrid loss")
    noise_conditioning: str = option("timestep",
                                     "timestep | logsnr (continuous: retune inference schedules "
                                     "freely)", choices=("timestep", "logsnr"))
    min_snr_gamma: float = option(0.0, "min-SNR-gamma loss weighting (0 = off)", min=0)
    upsample: str = option("bilinear", "how sr stages upsample their input: bilinear | bicubic",
                           choices=("bilinear", "bicubic", "nearest"))
    # conditioning augmentation (sr and refiner)
    aug_schedule: str = option("cosine", "schedule that maps the level s in [0, 1] to noise",
                               choices=("cosine", "linear"))
    s_max: float = option(0.5, "train amortized over s ~ U(0, s_max)", min=0, max=1)
    default_s: float = option(0.1, "level the nodes start from", min=0, max=1)
    blur_prob: float = option(0.0, "fraction of a batch blurred (paper: 0.5 at 128px and above)",
                              min=0, max=1)
    blur_sigma_min: float = option(0.4, "blur sigma range, low end", min=0)
    blur_sigma_max: float = option(0.6, "blur sigma range, high end", min=0)
    refiner_max_t: float = option(0.3, "refiner trains on t < refiner_max_t * T", gt=0, max=1)
    # feedback and checkpoints
    log_every: int = option(10, "steps between log lines", min=1)
    sample_every: int = option(500, "steps between sample grids (0 = off)", min=0)
    num_samples: int = option(16, "images in a sample grid", min=1)
    sample_steps: int = option(20, "sampler steps for sample grids", min=1)
    checkpoint_every: int = option(500, "steps between checkpoints", min=1)
    max_seconds: float = option(0.0, "stop (with a checkpoint) after this wall time (0 = no limit)",
                                min=0)
    stop_after: int = option(0,
                             "stop (with a checkpoint) after this many steps in this invocation (0 "
                             "= run to --steps)", min=0)


PRESETS = {
    "tiny": dict(base_channels=16, channel_mult="1,2", num_res_blocks=1, attention_resolutions="",
                 parameterization="v",
                 num_heads=2, batch_size=16, lr=5e-4, warmup=20, ema_decay=0.99, sample_every=0,
                 checkpoint_every=100, timesteps=1000),
    # v-prediction: x0 = alpha z - sigma v stays well conditioned at high noise, where
    # eps-prediction amplifies its error by 1/alpha and few-step ODE samplers drift in colour or
    # saturate
    "small": dict(base_channels=32, channel_mult="1,2,2", num_res_blocks=2,
                  attention_resolutions="8", parameterization="v",
                  num_heads=4, batch_size=64, lr=4e-4, warmup=500, ema_decay=0.999, ema_warmup=10,
                  timesteps=1000, sample_every=1000, checkpoint_every=500),
    # CDM appendix B (ImageNet 32x32 base, 32->64 SR), for GPU rigs
    "base": dict(base_channels=256, channel_mult="1,2,3,4", num_res_blocks=6,
                 attention_resolutions="8,16",
                 num_heads=4, dropout=0.1, batch_size=2048, lr=1e-4, warmup=1000,
                 lr_decay="constant",
                 ema_decay=0.9999, timesteps=4000, schedule="cosine", learn_sigma=True,
                 steps=700000, sample_every=5000, checkpoint_every=5000),
}
ROLE_PRESETS = {
    ("sr", "base"): dict(num_res_blocks=5, steps=400000),
    ("refiner", "base"): dict(num_res_blocks=3, learn_sigma=False, steps=200000),
    ("sr", "small"): dict(attention_resolutions="", crop=16, noise_conditioning="logsnr"),
    ("refiner", "small"): dict(attention_resolutions="", crop=16, noise_conditioning="logsnr",
                               s_max=0.3, default_s=0.05),
    ("sr", "tiny"): dict(crop=0),
}
ROLE_DEFAULTS = {"base": dict(resolution=16), "sr": dict(resolution=32, low_res=16),
                 "refiner": dict(resolution=32)}


def load_file(path, cls=None) -> dict:
    p = Path(path)
    if not p.is_file():
        raise CascadeError("config file not found", "an existing .json or .toml file", str(p))
    text = p.read_text()
    try:
        if p.suffix == ".toml":
            import tomllib  # Python 3.11+
            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except ImportError:
        raise CascadeError("TOML config files need Python 3.11 or newer", "a .json config",
                           p.name) from None
    except (json.JSONDecodeError, ValueError) as e:
        raise CascadeError(f"config file {p.name} does not parse ({e})") from None
    cls = cls or TrainConfig
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise CascadeError(f"unknown keys in {p.name}", f"keys of {cls.__name__} (see --help)",
                           unknown)
    return data


def run_record(folder) -> dict:
    """What a run in ``folder`` recorded when it started (its ``config.json``: the settings, and
    under "stage" the architecture); ``{}`` when the folder has none."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CascadeError(f"{path} does not parse ({e})") from None


def run_settings(folder) -> dict:
    """The settings a run in ``folder`` was started with (its record less the architecture), so
    that ``--resume`` continues that run rather than the defaults."""
    known = {f.name for f in fields(TrainConfig)}
    return {k: v for k, v in run_record(folder).items() if k in known and k != "role"}


def resolve(role: str, preset: str, file_values: dict, cli_values: dict) -> TrainConfig:
    if preset not in PRESETS:
        raise CascadeError("unknown preset", f"one of {sorted(PRESETS)}", repr(preset))
    values = {"role": role, **ROLE_DEFAULTS[role], **PRESETS[preset],
              **ROLE_PRESETS.get((role, preset), {}), **file_values, **cli_values, "preset": preset}
    cfg = TrainConfig(**values)
    if cfg.role == "refiner":
        cfg.low_res = cfg.resolution
    validate(cfg)
    return cfg


def validate(cfg: TrainConfig):
    """Every field within its declared range, then the rules that tie fields together."""
    check_options(cfg)
    if cfg.batch_size % cfg.grad_accum:
        raise CascadeError("batch size must split evenly into accumulation micro-batches",
                           f"a multiple of {cfg.grad_accum}", cfg.batch_size)
    if cfg.crop and cfg.role == "base":
        raise CascadeError("random crops are for sr and refiner stages", "crop 0 for a base stage",
                           cfg.crop)
    factor = cfg.resolution // cfg.low_res if cfg.low_res else 1
    if cfg.crop and (cfg.crop > cfg.resolution or cfg.crop % factor):
        raise CascadeError("crop must fit the resolution and the upsampling factor",
                           f"<= {cfg.resolution} and a multiple of the factor", cfg.crop)
    if cfg.blur_sigma_min > cfg.blur_sigma_max:
        raise CascadeError("the blur sigma range is reversed",
                           f"--blur-sigma-min <= --blur-sigma-max ({cfg.blur_sigma_max})",
                           cfg.blur_sigma_min)
    if bool(cfg.captions) != bool(cfg.text_encoder):
        raise CascadeError("a text stage needs its captions and the encoder for them",
                           "--captions and --text-encoder together",
                           "--captions only" if cfg.captions else "--text-encoder only")
    if cfg.role != "sr" and cfg.low_res and cfg.role != "refiner":
        raise CascadeError("--low-res is for sr stages", "0", cfg.low_res)
    if cfg.role == "sr" and not 0 < cfg.low_res < cfg.resolution:
        raise CascadeError("an sr stage upsamples", f"0 < --low-res < --resolution "
                                                    f"({cfg.resolution})", cfg.low_res)


def _ints(text: str) -> tuple:
    return tuple(int(v) for v in str(text).replace(" ", "").split(",") if v)


def stage_config(cfg: TrainConfig, num_classes: int, class_names: tuple,
                 text: TextConfig | None = None) -> StageConfig:
    """The StageConfig (stored in every checkpoint) that a training config describes; ``text``:
    the encoder of a text stage (``train.captions``), whose tokens reach every attention layer
    projected to the U-Net's widest channels and, pooled, the embedding."""
    text = text or TextConfig()
    mult = _ints(cfg.channel_mult)
    return StageConfig(
        role=cfg.role, resolution=cfg.resolution, low_res=cfg.low_res if cfg.role != "base" else 0,
        unet=UNetConfig(cfg.base_channels, mult, cfg.num_res_blocks,
                        attention_resolutions=_ints(cfg.attention_resolutions),
                        num_heads=cfg.num_heads, dropout=cfg.dropout,
                        text_channels=cfg.base_channels * max(mult) if text.width else 0,
                        text_pool_heads=cfg.num_heads if text.width else 0),
        text=text,
        schedule=ScheduleConfig(cfg.schedule, cfg.timesteps), parameterization=cfg.parameterization,
        learn_sigma=cfg.learn_sigma, noise_conditioning=cfg.noise_conditioning,
        num_classes=num_classes, class_names=class_names, upsample=cfg.upsample,
        augmentation=AugmentConfig(cfg.aug_schedule, cfg.s_max, cfg.blur_prob,
                                   blur_sigma=(cfg.blur_sigma_min, cfg.blur_sigma_max),
                                   default_s=cfg.default_s),
        refiner_max_t=cfg.refiner_max_t, training=training_record(cfg),
    )


def training_record(cfg: TrainConfig) -> dict:
    """What a stage file says of the run that trained it (steps and images are added as it
    trains; a fine-tuned stage keeps its starting weights' record under "parent")."""
    return {"name": cfg.name, "data": cfg.data, "preset": cfg.preset, "seed": cfg.seed,
            "batch_size": cfg.batch_size, "lr": cfg.lr}
