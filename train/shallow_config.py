"""Configuration of the shallow-cascade recipe (coarse 16px -> upsampler 32px -> refiner 32px)."""
from __future__ import annotations

from dataclasses import dataclass

from cascade_core import CascadeError, ScheduleConfig, ShallowConfig, StageConfig, UNetConfig

from .config import _f


@dataclass
class ShallowTrainConfig:
    data: str = _f("", "image folder (class sub-folders = labels) or .npz")
    out: str = _f("runs/shallow", "output folder")
    resolution: int = _f(32, "final resolution (upsampler output, refiner)")
    coarse_res: int = _f(16, "coarse stage resolution")
    coarse: str = _f("diffusion", "coarse generator kind", choices=("diffusion", "dae"))
    upsampler: str = _f("pixelshuffle", "upsampler kind", choices=("pixelshuffle", "resnet", "diffusion"))
    refiner: str = _f("vit", "refiner kind", choices=("vit", "conv", "diffusion"))
    hidden: int = _f(64, "channels of one-pass stages and the DAE (ViT: token width)")
    blocks: int = _f(2, "residual blocks of one-pass stages and the DAE")
    vit_depth: int = _f(4, "ViT refiner transformer layers")
    vit_heads: int = _f(4, "ViT refiner attention heads")
    patch: int = _f(4, "ViT refiner patch size")
    dae_sigma: float = _f(1.0, "DAE noise range / chain start")
    unet_channels: int = _f(32, "base channels of diffusion stages")
    timesteps: int = _f(1000, "timesteps of diffusion stages")
    phase1_epochs: int = _f(35, "phase 1: coarse warm-up epochs")
    phase2_epochs: int = _f(35, "phase 2: upsampler + refiner epochs (coarse frozen)")
    phase3_epochs: int = _f(30, "phase 3: joint fine-tuning epochs (gradients reach the coarse stage)")
    epoch_size: int = _f(0, "images per epoch (0 = the whole dataset)")
    batch_size: int = _f(128, "global batch")
    lr: float = _f(2e-4, "learning rate of every phase's AdamW")
    lr_step: int = _f(15, "StepLR step size in epochs (per phase)")
    lr_gamma: float = _f(0.5, "StepLR decay factor")
    tf2_start: float = _f(0.9, "phase 2 teacher-forcing probability at its start")
    tf2_end: float = _f(0.1, "... and at its end (linear)")
    tf3_start: float = _f(0.1, "phase 3 teacher-forcing probability at its start")
    tf3_end: float = _f(0.0, "... and at its end (linear)")
    perceptual_weight: float = _f(0.1, "weight of the refiner's perceptual term (0 = MSE only)")
    perceptual: str = _f("", "classifier file for the perceptual term (default: bench/models/cifar10-classifier)")
    lpips_backbone: str = _f("", "use LPIPS instead: a local VGG16 state dict (torchvision layout)")
    lpips_linear: str = _f("", "... and the LPIPS heads (lpips' vgg.pth: lin0..lin4)")
    label_dropout: float = _f(0.1, "labels replaced by the null class (coarse stage)")
    seed: int = _f(0, "seed of every random choice")
    workers: int = _f(0, "data-loading worker processes per rank")
    device: str = _f("auto", "auto | cpu | cuda | cuda:N")
    precision: str = _f("auto", "auto | fp32 | bf16 | fp16")
    keep: int = _f(2, "training states kept")
    progress: bool = _f(True, "show a progress bar")
    tensorboard: bool = _f(True, "log to TensorBoard when it is installed")

    def __post_init__(self):
        if self.resolution % self.coarse_res or self.resolution <= self.coarse_res:
            raise CascadeError("the upsampler needs an integer factor", f"a multiple of {self.coarse_res}",
                               self.resolution)
        if min(self.phase1_epochs, self.phase2_epochs, self.phase3_epochs) < 0 or self.batch_size < 1:
            raise CascadeError("epochs must be >= 0 and the batch positive", ">= 0",
                               (self.phase1_epochs, self.phase2_epochs, self.phase3_epochs, self.batch_size))
        for name in ("tf2_start", "tf2_end", "tf3_start", "tf3_end", "label_dropout"):
            if not 0 <= getattr(self, name) <= 1:
                raise CascadeError(f"{name} is a probability", "[0, 1]", getattr(self, name))


def teacher_forcing(cfg: ShallowTrainConfig, phase: int, progress: float) -> float:
    """Probability that the upsampler sees the ground-truth low-res image instead of the coarse
    stage's output: linear from the phase's start to its end value (1 in phase 1, where it is unused)."""
    if phase == 1:
        return 1.0
    start, end = (cfg.tf2_start, cfg.tf2_end) if phase == 2 else (cfg.tf3_start, cfg.tf3_end)
    return start + (end - start) * min(max(progress, 0.0), 1.0)


def stage_configs(cfg: ShallowTrainConfig, num_classes: int, class_names: tuple) -> dict:
    shallow = ShallowConfig(hidden=cfg.hidden, blocks=cfg.blocks, patch=cfg.patch, depth=cfg.vit_depth,
                            heads=cfg.vit_heads, dae_sigma=cfg.dae_sigma)
    unet = UNetConfig(cfg.unet_channels, (1, 2, 2), 2, (), 4)
    sched = ScheduleConfig("cosine", cfg.timesteps)
    info = {"data": cfg.data, "recipe": "shallow", "seed": cfg.seed}
    common = dict(unet=unet, schedule=sched, shallow=shallow, parameterization="v")
    return {
        "coarse": StageConfig(role="base", resolution=cfg.coarse_res, kind=cfg.coarse, num_classes=num_classes,
                              class_names=class_names, training={**info, "name": f"shallow-coarse-{cfg.coarse}"},
                              **common),
        "upsampler": StageConfig(role="sr", resolution=cfg.resolution, low_res=cfg.coarse_res, kind=cfg.upsampler,
                                 noise_conditioning="logsnr",
                                 training={**info, "name": f"shallow-upsampler-{cfg.upsampler}"}, **common),
        "refiner": StageConfig(role="refiner", resolution=cfg.resolution, low_res=cfg.resolution, kind=cfg.refiner,
                               noise_conditioning="logsnr",
                               training={**info, "name": f"shallow-refiner-{cfg.refiner}"}, **common),
    }
