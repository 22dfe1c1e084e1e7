"""cascade_core: the engine of pixel-space cascaded diffusion (Ho et al. 2021).

Torch and the listed libraries only: no ComfyUI, no training loop, no image I/O.
Inside, images are float32 NCHW in [-1, 1].
"""
from . import (
    formats,  # noqa: F401  (cc.formats.adm_table for names and the table)
    precision,  # noqa: F401  (cc.precision: native dtypes, what "auto" means)
    sweep,  # noqa: F401  (cc.sweep: parse_axis, cells_of, run_sweep)
)
from .classes import parse_classes
from .compiling import compile_stage, uncompile_stage
from .denoiser import Denoiser
from .ema import EMA
from .errors import CascadeError, CheckpointError, SamplingInterrupted
from .formats.stage_file import load_classifier, load_stage, read_config, save_stage
from .grid import image_grid
from .handover import LowResCond, fit_condition, make_condition
from .images import from_uint8, to_uint8
from .inspection import StageReport, factor_between, inspection_picture, stage_report
from .losses import dae_loss, training_loss
from .models.classifier import ClassifierConfig, NoisyClassifier
from .models.config import KINDS, AugmentConfig, ShallowConfig, StageConfig, UNetConfig
from .models.stage import Stage
from .pipeline import check_size, generate, guide_check, refine, super_resolve
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
from .sampling import SamplingPlan
from .version import __version__

__all__ = [
    "AugmentConfig", "ClassifierConfig", "NoisyClassifier", "load_classifier", "guide_check",
    "KINDS", "StageReport", "factor_between", "inspection_picture",
    "stage_report", "ShallowConfig", "dae_loss", "CascadeError", "CheckpointError",
    "Denoiser", "DiscreteSchedule", "EMA", "LowResCond",
    "NoiseSource", "SAMPLERS", "SPACINGS", "SamplingInterrupted", "ScheduleConfig", "Stage",
    "StageConfig",
    "UNetConfig", "__version__", "aug_alpha_bar", "aug_sigma", "blur_augment", "check_size",
    "condition_augment", "downsample", "fit_condition", "generate", "get_sampler", "image_grid",
    "load_stage", "make_condition", "noise_augment",
    "parse_classes", "read_config", "refine", "respace", "sampling_sigmas", "save_stage",
    "space_timesteps", "super_resolve", "training_loss", "from_uint8", "to_uint8", "SamplingPlan",
    "compile_stage", "uncompile_stage",
]
