"""Configuration of the shallow-cascade recipe (coarse 16px -> upsampler 32px -> refiner 32px)."""
from __future__ import annotations

from dataclasses import dataclass

from cascade_core import (
    AugmentConfig,
    CascadeError,
    ScheduleConfig,
    ShallowConfig,
    StageConfig,
    UNetConfig,
)

from .options import RunConfig, check_options, option


@dataclass
class ShallowTrainConfig(RunConfig):
    """The shallow-cascade recipe; the shared fields come from RunConfig (two defaults differ)."""

    out: str = option("runs/shallow", "output folder")
    batch_size: int = option(128, "global batch", min=1)
    resolution: int = option(32, "final resolution (upsampler output, refiner)", min=1)
    coarse_res: int = option(16, "coarse stage resolution", min=1)
    coarse: str = option("diffusion", "the coarse stage: a diffusion U-Net or a DAE",
                         choices=("diffusion", "dae"))
    upsampler: str = option("pixelshuffle", "the upsampler's network (diffusion: a U-Net)",
                            choices=("pixelshuffle", "resnet", "diffusion"))
    refiner: str = option("vit", "the refiner's network (diffusion: a U-Net)",
                          choices=("vit", "conv", "diffusion"))
    hidden: int = option(64, "channels of one-pass stages and the DAE (ViT: token width)", min=1)
    blocks: int = option(2, "residual blocks of one-pass stages and the DAE", min=1)
    vit_depth: int = option(4, "ViT refiner transformer layers", min=1)
    vit_heads: int = option(4, "ViT refiner attention heads", min=1)
    patch: int = option(4, "ViT refiner patch size", min=1)
    dae_sigma: float = option(1.0, "DAE noise range / chain start", gt=0)
    unet_channels: int = option(32, "base channels of diffusion stages", min=1)
    timesteps: int = option(1000, "timesteps of diffusion stages", min=2)
    phase1_epochs: int = option(35, "phase 1: coarse warm-up epochs", min=0)
    phase2_epochs: int = option(35, "phase 2: upsampler + refiner epochs (coarse frozen)", min=0)
    phase3_epochs: int = option(30, "phase 3: joint fine-tuning epochs (gradients reach the coarse "
                                "stage)", min=0)
    epoch_size: int = option(0, "images per epoch (0 = the whole dataset)", min=0)
    lr_step: int = option(15, "StepLR step size in epochs (per phase)", min=1)
    lr_gamma: float = option(0.5, "StepLR decay factor", gt=0, max=1)
    tf2_start: float = option(0.9, "phase 2 teacher-forcing probability at its start", min=0, max=1)
    tf2_end: float = option(0.1, "... and at its end (linear)", min=0, max=1)
    tf3_start: float = option(0.1, "phase 3 teacher-forcing probability at its start", min=0, max=1)
    tf3_end: float = option(0.0, "... and at its end (linear)", min=0, max=1)
    perceptual_weight: float = option(0.1, "weight of the refiner's perceptual term (0 = MSE only)",
                                      min=0)
    perceptual: str = option("", "classifier file for the perceptual term (default: "
                             "bench/models/cifar10-classifier)")
    lpips_backbone: str = option("",
                                 "use LPIPS instead: a local VGG16 state dict (torchvision layout)")
    lpips_linear: str = option("", "... and the LPIPS heads (lpips' vgg.pth: lin0..lin4)")

    def __post_init__(self):
        check_options(self)
        if self.resolution % self.coarse_res or self.resolution <= self.coarse_res:
            raise CascadeError("the upsampler needs an integer factor",
                               f"a multiple of {self.coarse_res}", self.resolution)


def teacher_forcing(cfg: ShallowTrainConfig, phase: int, progress: float) -> float:
    """Probability that the upsampler sees the ground-truth low-res image instead of the coarse
    stage's output: linear from the phase's start to its end value (1 in phase 1, unused)."""
    if phase == 1:
        return 1.0
    start, end = (cfg.tf2_start, cfg.tf2_end) if phase == 2 else (cfg.tf3_start, cfg.tf3_end)
    return start + (end - start) * min(max(progress, 0.0), 1.0)


def network(choice: str) -> str:
    """The stage config's network for a ``--coarse/--upsampler/--refiner`` choice: "diffusion"
    names the U-Net, the other choices are networks already."""
    return "unet" if choice == "diffusion" else choice


def stage_configs(cfg: ShallowTrainConfig, num_classes: int, class_names: tuple) -> dict:
    """The three stages' configs. The upsampler and the refiner record that they were trained
    without conditioning augmentation (the shallow report's recipe: teacher forcing, no noise on
    the condition), so Stage Info says so and the nodes refuse an augmented input for them."""
    shallow = ShallowConfig(hidden=cfg.hidden, blocks=cfg.blocks, patch=cfg.patch,
                            depth=cfg.vit_depth, heads=cfg.vit_heads, dae_sigma=cfg.dae_sigma)
    unet = UNetConfig(cfg.unet_channels, (1, 2, 2), 2, attention_resolutions=(), num_heads=4)
    sched = ScheduleConfig("cosine", cfg.timesteps)
    info = {"data": cfg.data, "recipe": "shallow", "seed": cfg.seed}
    common = dict(unet=unet, schedule=sched, shallow=shallow, parameterization="v")
    clean = dict(aug_input=False, augmentation=AugmentConfig(s_max=0.0, default_s=0.0),
                 noise_conditioning="logsnr")
    return {
        "coarse": StageConfig(role="base", resolution=cfg.coarse_res, network=network(cfg.coarse),
                              num_classes=num_classes, class_names=class_names,
                              training={**info, "name": f"shallow-coarse-{cfg.coarse}"}, **common),
        "upsampler": StageConfig(role="sr", resolution=cfg.resolution, low_res=cfg.coarse_res,
                                 network=network(cfg.upsampler), **clean,
                                 training={**info, "name": f"shallow-upsampler-{cfg.upsampler}"},
                                 **common),
        "refiner": StageConfig(role="refiner", resolution=cfg.resolution, low_res=cfg.resolution,
                               network=network(cfg.refiner), **clean,
                               training={**info, "name": f"shallow-refiner-{cfg.refiner}"},
                               **common),
    }
