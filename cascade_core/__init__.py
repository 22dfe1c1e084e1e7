"""cascade_core: the engine of pixel-space cascaded diffusion (Ho et al. 2021).

Torch and the listed libraries only: no ComfyUI, no training loop, no image I/O.
Inside, images are float32 NCHW in [-1, 1]. The folders, lowest layer first:

* ``base``: errors, version, image conversions and grids, precision;
* ``process``: schedules, the forward process, samplers, noise streams, augmentation;
* ``models``: the configs, the one U-Net, the shallow networks, the noisy classifier, ``Stage``;
* ``formats``: our stage file (one owner of its version) and the released-file adapters;
* ``run``: the plan and conditioning of a run, the pipeline, per-method strategies, the
  denoiser, tiles, compiling;
* ``training``: losses, one training evaluation per method, the EMA;
* ``analysis``: sweeps over settings and the per-stage inspection.

This namespace re-exports what scripts and the nodes use::

    import cascade_core as cc
    stage = cc.load_stage("weights/cifar10-base16.safetensors")
    plan = cc.SamplingPlan(steps=8, start=cc.Start.truncated(0.15))
    images, handover = cc.generate(stage, plan, cc.Conditioning.for_base(4), seed=0)
"""
from . import formats  # noqa: F401  (cc.formats.adm_table for names and the table)
from .analysis import sweep  # noqa: F401  (cc.sweep: run_sweep, SweepSettings)
from .analysis.inspection import StageReport, factor_between, inspection_picture, stage_report
from .base import precision  # noqa: F401  (cc.precision: native dtypes, what "auto" means)
from .base.errors import CascadeError, CheckpointError, SamplingInterrupted
from .base.grid import image_grid
from .base.images import from_uint8, to_uint8
from .base.version import __version__
from .formats.deepfloyd_config import default_threshold
from .formats.stage_file import load_classifier, load_stage, read_config, save_stage
from .models.config import (
    NETWORKS_BY_ROLE,
    AugmentConfig,
    SamplingConfig,
    ShallowConfig,
    StageConfig,
    TextConfig,
    UNetConfig,
)
from .models.noisy_classifier import ClassifierConfig, NoisyClassifier
from .models.stage import Stage
from .process.augment import (
    aug_alpha_bar,
    aug_sigma,
    blur_augment,
    condition_augment,
    noise_augment,
)
from .process.noise import NoiseSource
from .process.resize import downsample
from .process.samplers import SAMPLERS, get_sampler
from .process.schedules import (
    SPACINGS,
    DiscreteSchedule,
    ScheduleConfig,
    respace,
    sampling_sigmas,
    space_timesteps,
)
from .run import cost  # noqa: F401  (cc.cost.run_cost: what a run will take, said before it)
from .run.class_labels import parse_classes
from .run.compiling import compile_stage, uncompile_stage
from .run.conditioning import Conditioning, TextCond
from .run.denoiser import Denoiser, NetInputs
from .run.handover import LowResCond, fit_condition, make_condition, upsampled_condition
from .run.pipeline import (
    check_size,
    generate,
    generate_regions,
    guide_check,
    refine,
    super_resolve,
)
from .run.plan import SamplingPlan, Start, check_sigmas, sigma_grid
from .run.prompts import PromptEncoder
from .run.regions import Region, follow_regions, region_mask
from .training.ema import EMA
from .training.losses import dae_loss, training_loss
from .training.passes import training_pass

__all__ = [
    "AugmentConfig", "CascadeError", "CheckpointError", "ClassifierConfig", "Conditioning",
    "SamplingConfig", "TextConfig",
    "Denoiser", "DiscreteSchedule", "EMA", "LowResCond", "NETWORKS_BY_ROLE", "NetInputs",
    "NoiseSource", "NoisyClassifier", "PromptEncoder", "Region", "SAMPLERS", "SPACINGS",
    "SamplingInterrupted", "SamplingPlan", "ScheduleConfig", "ShallowConfig", "Stage",
    "StageConfig", "StageReport", "Start", "TextCond", "UNetConfig", "__version__",
    "aug_alpha_bar", "aug_sigma", "blur_augment", "check_sigmas", "check_size", "compile_stage",
    "condition_augment", "dae_loss", "default_threshold", "downsample", "factor_between",
    "fit_condition", "follow_regions", "from_uint8", "generate", "generate_regions",
    "get_sampler", "guide_check",
    "image_grid", "inspection_picture", "load_classifier", "load_stage", "make_condition",
    "noise_augment", "parse_classes", "read_config", "refine", "region_mask", "respace",
    "sampling_sigmas",
    "save_stage", "sigma_grid", "space_timesteps", "stage_report", "super_resolve", "to_uint8",
    "training_loss", "training_pass", "uncompile_stage", "upsampled_condition",
]
