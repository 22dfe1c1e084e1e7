"""What one stage hands the next: the low-res image, its augmentation level and its classes.

``make_condition`` is the non-truncated path of CDM Algorithm 2 (and the
CondAugment node): any image becomes a ``LowResCond`` at level ``s``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..base.errors import CascadeError, check_finite, check_range
from ..base.memory import check_fits, check_image_side, image_bytes
from ..process.augment import aug_alpha_bar, condition_augment, noise_augment
from ..process.noise import NoiseSource
from ..process.resize import downsample


@dataclass
class LowResCond:
    """The (augmented) low-res image, its level ``s`` and where they came from."""

    image: torch.Tensor               # (B, C, h, w): z_s, the image the SR stage is conditioned on
    level: torch.Tensor               # (B,) augmentation level s in [0, 1]
    schedule: str = "cosine"          # augmentation schedule that gives ``level`` its meaning
    clean: torch.Tensor | None = None  # the un-noised image, for previews and one-pass stages
    labels: torch.Tensor | None = None  # classes of the stage that made it, for the next stage
    seed: int | None = None           # Cond Augment's noise seed (image i: seed + i), if it made it
    regions: tuple | None = None      # the regions that drew it (an SR stage can follow them)

    def __post_init__(self):
        if self.image.ndim != 4:
            raise CascadeError("low-res conditioning must be a batch of images", "(B, C, H, W)",
                               tuple(self.image.shape))
        level = torch.as_tensor(self.level, dtype=torch.float32)
        self.level = level.flatten().expand(self.image.shape[0])


def make_condition(image: torch.Tensor, s: float, seed, schedule: str = "cosine",
                   blur_sigma: float = 0.0):
    """Non-truncated conditioning augmentation (and CondAugment): blur, then noise to level ``s``.

    ``seed`` is an int (image i uses ``seed + i``) or a NoiseSource.
    """
    s = check_range("augmentation level s", s, 0.0, hi=1.0)
    B, C, H, W = image.shape
    check_image_side("the image to augment", H, W)
    # the float copy, the blurred copy, the noise and the result
    check_fits(f"augmenting {B} image(s) of {H}x{W}", image_bytes(image.shape) * 4)
    check_finite("the image to augment", image)
    check_finite("blur sigma", blur_sigma)
    noise = NoiseSource.from_seed(seed, image.shape[0]) if isinstance(seed, int) else seed
    z = condition_augment(image.float(), s, noise, schedule=schedule, blur_sigma=blur_sigma)
    return LowResCond(image=z, level=torch.full((image.shape[0],), s), schedule=schedule,
                      clean=image, seed=seed if isinstance(seed, int) and not blur_sigma else None)


def upsampled_condition(low: LowResCond, *, size, schedule: str,
                        noise: NoiseSource | None = None) -> tuple:
    """DeepFloyd IF stage II's conditioning (augmentation ``apply="upsampled"``): the clean
    low-res image upsampled to ``size`` (bilinear, corners aligned), then noised there to
    ``low.level``, read on ``schedule`` (``if_steps``: noise_level = 1000 s), with Cond
    Augment's seed. Returns (conditioning image, levels). A truncated handover (a latent z_s
    at low resolution) or a blurred one cannot become this conditioning: refused."""
    if low.clean is None or (noise is None and low.seed is None and bool((low.level > 0).any())):
        raise CascadeError("this stage (DeepFloyd IF stage II) noises its input after upsampling "
                           "it, so it needs the clean image and a seed to noise it with",
                           "a Cond Augment output (blur 0) or a base stage's finished image "
                           "(truncate_s 0)", "a truncated or blurred handover")
    up = F.interpolate(low.clean.float(), size=tuple(size), mode="bilinear", align_corners=True)
    if noise is None:
        noise = NoiseSource.from_seed(low.seed or 0, up.shape[0])
    return noise_augment(up, low.level, noise, schedule=schedule), low.level


def convert_level(level: torch.Tensor, source: str, target: str) -> torch.Tensor:
    """The level on schedule ``target`` with the same noise as ``level`` on ``source``."""
    if source == target:
        return level
    want = aug_alpha_bar(level.double(), source)
    lo, hi = torch.zeros_like(want), torch.ones_like(want)
    for _ in range(50):  # bisection: abar is decreasing in s
        mid = (lo + hi) / 2
        below = aug_alpha_bar(mid, target) > want
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    return ((lo + hi) / 2).float()


def fit_condition(stage, cond: LowResCond) -> LowResCond:
    """Resize a conditioning image to the nearest size whose output fits ``stage``."""
    m = stage.config.size_multiple
    step = max(1, m // math.gcd(m, stage.config.factor))  # low-res side must be a multiple of this
    h, w = cond.image.shape[-2:]
    fit = tuple(max(step, math.floor(v / step + 0.5) * step) for v in (h, w))  # ties round up
    if fit == (h, w):
        return cond
    image = downsample(cond.image,
                       fit) if fit[0] <= h and fit[1] <= w else torch.nn.functional.interpolate(
        cond.image.float(), size=fit, mode="bicubic", align_corners=False)
    return LowResCond(image=image, level=cond.level, schedule=cond.schedule, clean=cond.clean,
                      labels=cond.labels, seed=cond.seed)
