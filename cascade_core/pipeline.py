"""The cascade in three calls: ``generate`` (base), ``super_resolve`` (SR), ``refine``.

These are the functions the ComfyUI nodes, the training previews and the
benchmarks call; each takes a seed (one stream per image), a sampler name, a
step count and spacing, and an optional per-step callback.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch

from .augment import aug_alpha_bar, aug_sigma, condition_augment
from .denoiser import Denoiser
from .errors import CascadeError, check_range
from .noise import NoiseSource
from .resize import downsample
from .samplers import get_sampler
from .shallow import dae_sample
from .schedules import karras_sigmas, sampling_sigmas, truncate_sigmas
from .stage import Stage


@dataclass
class LowResCond:
    """What one stage hands the next: the (augmented) low-res image and its level ``s``."""

    image: torch.Tensor               # (B, C, h, w): z_s, the image the SR stage is conditioned on
    level: torch.Tensor               # (B,) augmentation level s in [0, 1]
    schedule: str = "cosine"          # augmentation schedule that gives ``level`` its meaning
    clean: torch.Tensor | None = None  # the un-noised image, for previews
    labels: torch.Tensor | None = None  # classes of the stage that made it, for the next stage

    def __post_init__(self):
        if self.image.ndim != 4:
            raise CascadeError("low-res conditioning must be a batch of images", "(B, C, H, W)",
                               tuple(self.image.shape))
        self.level = torch.as_tensor(self.level, dtype=torch.float32).flatten().expand(self.image.shape[0])


def make_condition(image: torch.Tensor, s: float, seed, schedule: str = "cosine", blur_sigma: float = 0.0):
    """Non-truncated conditioning augmentation (and CondAugment): blur, then noise to level ``s``."""
    s = check_range("augmentation level s", s, 0.0, 1.0)
    noise = NoiseSource.from_seed(seed, image.shape[0]) if isinstance(seed, int) else seed
    z = condition_augment(image.float(), s, noise, schedule, blur_sigma)
    return LowResCond(z, torch.full((image.shape[0],), s), schedule, image)


def autocast(device: torch.device, dtype: torch.dtype):
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def run_sampler(stage: Stage, x, sigmas, sampler: str, noise: NoiseSource, labels=None, cond=None,
                aug_level=None, guidance=1.0, callback=None, dtype=torch.float32, **options):
    """Run one sampler over ``sigmas`` from ``x``; returns (x, last denoised estimate)."""
    device = stage.device
    model = Denoiser(stage, labels=None if labels is None else labels.to(device),
                     cond=None if cond is None else cond.to(device),
                     aug_level=None if aug_level is None else aug_level.to(device), guidance=guidance)
    last = {}

    def report(info):
        last["denoised"] = info["denoised"]
        if callback is not None:
            callback(info)

    with torch.inference_mode(), autocast(device, dtype):
        x = get_sampler(sampler)(model, x.to(device), sigmas, noise=noise, callback=report, **options)
    return x.float(), last.get("denoised", x).float()


def generate(stage: Stage, batch: int, seed: int, steps=30, sampler="dpmpp_2m", spacing="karras", labels=None,
             guidance=1.0, truncate_s: float | None = None, aug_schedule="cosine", callback=None,
             dtype=torch.float32, **options):
    """Sample a base stage. Returns (images in [-1, 1], LowResCond for the next stage).

    With ``truncate_s`` the sampler stops exactly at the augmentation level s
    (Algorithm 2, truncated) and the handover carries z_s; otherwise it carries
    z_0 at level 0, to be augmented by ``make_condition``.
    """
    _expect_role(stage, "base")
    cfg = stage.config
    noise = NoiseSource.from_seed(seed, batch)
    s = 0.0 if truncate_s is None else check_range("truncation level s", truncate_s, 0.0, 1.0, stage.name)
    if cfg.kind == "dae":
        return _generate_dae(stage, batch, seed, noise, labels, s, aug_schedule, callback, dtype)
    sigmas = sampling_sigmas(stage.schedule, steps, spacing)
    stop = aug_sigma(s, aug_schedule) if s > 0 else 0.0
    shape = (cfg.channels, cfg.resolution, cfg.resolution)
    if stop >= float(sigmas[0]):  # the whole reverse process lies above s: z_s is the start noise
        z = noise.randn(shape)
        return torch.zeros_like(z), LowResCond(z, torch.full((batch,), s), aug_schedule, None, labels)
    sigmas = truncate_sigmas(sigmas, stop)
    x = noise.randn(shape, stage.device) * math.sqrt(1 + float(sigmas[0]) ** 2)
    x, denoised = run_sampler(stage, x, sigmas, sampler, noise, labels, guidance=guidance,
                              callback=callback, dtype=dtype, **options)
    z = x / math.sqrt(1 + stop ** 2)  # VE -> VP: exactly q(z_s | z_0)'s scaling
    image = (denoised if s > 0 else x).clamp(-1, 1).cpu()
    return image, LowResCond(z.cpu(), torch.full((batch,), s), aug_schedule, image, labels)


def super_resolve(stage: Stage, cond: LowResCond, seed: int, steps=30, sampler="dpmpp_2m", spacing="karras",
                  labels=None, guidance=1.0, callback=None, dtype=torch.float32, **options):
    """Sample an SR stage conditioned on ``cond`` at output size ``factor x`` the input."""
    _expect_role(stage, "sr")
    cfg = stage.config
    B, C, h, w = cond.image.shape
    if C != cfg.channels:
        raise CascadeError("conditioning channel count does not match", cfg.channels, C, stage.name)
    H, W = h * cfg.factor, w * cfg.factor
    check_size(stage, H, W, what=f"output of {h}x{w} input")
    if cfg.deterministic:  # one pass over the un-noised image (trained with teacher forcing, not noise)
        source = cond.clean if cond.clean is not None else cond.image
        return _one_pass(stage, source, callback, dtype).clamp(-1, 1)
    level = convert_level(cond.level, cond.schedule, cfg.augmentation.schedule)
    noise = NoiseSource.from_seed(seed, B)
    sigmas = sampling_sigmas(stage.schedule, steps, spacing)
    x = noise.randn((C, H, W), stage.device) * math.sqrt(1 + float(sigmas[0]) ** 2)
    x, _ = run_sampler(stage, x, sigmas, sampler, noise, labels, cond.image, level, guidance, callback, dtype,
                       **options)
    return x.clamp(-1, 1).cpu()


def refine(stage: Stage, image: torch.Tensor, strength: float, seed: int, steps=10, sampler="dpmpp_2m",
           spacing="karras", labels=None, guidance=1.0, s: float | None = None, callback=None,
           dtype=torch.float32, **options):
    """Noise ``image`` to ``strength`` of the refiner's trained range, then denoise it.

    The refiner is also conditioned on the image itself, augmented to level
    ``s`` (the stage's default when None). Strength 0 returns the input.
    """
    _expect_role(stage, "refiner")
    cfg = stage.config
    strength = check_range("refiner strength", strength, 0.0, 1.0, stage.name)
    B, C, H, W = image.shape
    if C != cfg.channels:
        raise CascadeError("image channel count does not match", cfg.channels, C, stage.name)
    check_size(stage, H, W, what="input image")
    if strength == 0 or int(steps) < 1:
        return image.clamp(-1, 1)
    if cfg.deterministic:  # strength blends the input with the refiner's one-pass output
        x = image.float()
        return (x + strength * (_one_pass(stage, x, callback, dtype) - x)).clamp(-1, 1)
    s = cfg.augmentation.default_s if s is None else s
    noise = NoiseSource.from_seed(seed, B)
    cond = make_condition(image, s, NoiseSource.from_seed(seed + 7919, B), cfg.augmentation.schedule)
    t_start = strength * cfg.refiner_max_t * (stage.schedule.T - 1)
    sigma_start = float(stage.schedule.t_to_sigma(torch.tensor(t_start)))
    sigmas = _partial_sigmas(stage, sigma_start, int(steps), spacing)
    x = image.to(stage.device).float() + noise.randn((C, H, W), stage.device) * sigma_start
    x, _ = run_sampler(stage, x, sigmas, sampler, noise, labels, cond.image, cond.level, guidance, callback,
                       dtype, **options)
    return x.clamp(-1, 1).cpu()


def _generate_dae(stage, batch, seed, noise, labels, s, aug_schedule, callback, dtype):
    cfg = stage.config
    x = noise.randn((cfg.channels, cfg.resolution, cfg.resolution), stage.device) * cfg.shallow.dae_sigma
    with torch.inference_mode(), autocast(stage.device, dtype):
        image = dae_sample(stage, x, noise, None if labels is None else labels.to(stage.device), callback)
    image = image.float().clamp(-1, 1).cpu()
    if s > 0:  # no reverse process to truncate: hand over z_0 re-noised to s (the non-truncated path)
        cond = make_condition(image, s, NoiseSource.from_seed(seed + 7919, batch), aug_schedule)
        cond.labels = labels
        return image, cond
    return image, LowResCond(image, torch.zeros(batch), aug_schedule, image, labels)


def _one_pass(stage, x, callback, dtype):
    with torch.inference_mode(), autocast(stage.device, dtype):
        out = stage.net(x.to(stage.device, torch.float32)).float()
    if callback is not None:
        callback({"i": 0, "total": 1, "x": x, "sigma": 0.0, "denoised": out})
    return out.cpu()


def _partial_sigmas(stage: Stage, sigma_start: float, steps: int, spacing: str) -> torch.Tensor:
    sched = stage.schedule
    if spacing == "karras":
        sig = karras_sigmas(steps, min(sched.sigma_min, sigma_start), sigma_start)
    else:
        t_start = float(sched.sigma_to_t(torch.tensor([sigma_start]))[0])
        sig = sched.t_to_sigma(torch.linspace(t_start, 0, steps, dtype=torch.float64))
    return torch.cat([sig, sig.new_zeros(1)])


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


def fit_condition(stage: Stage, cond: LowResCond) -> LowResCond:
    """Resize a conditioning image to the nearest size whose output fits ``stage``."""
    m = stage.config.size_multiple
    step = max(1, m // math.gcd(m, stage.config.factor))  # low-res side must be a multiple of this
    h, w = cond.image.shape[-2:]
    fit = tuple(max(step, math.floor(v / step + 0.5) * step) for v in (h, w))  # ties round up
    if fit == (h, w):
        return cond
    image = downsample(cond.image, fit) if fit[0] <= h and fit[1] <= w else torch.nn.functional.interpolate(
        cond.image.float(), size=fit, mode="bicubic", align_corners=False)
    return LowResCond(image, cond.level, cond.schedule, cond.clean, cond.labels)


def fitting_sizes(stage: Stage, near: int, count: int = 3) -> list[int]:
    m = stage.config.size_multiple
    base = max(m, (near // m) * m)
    return sorted({max(m, base + k * m) for k in range(-1, count - 1)})


def check_size(stage: Stage, H: int, W: int, what: str = "image"):
    """Stages run on any size divisible by their U-Net's total downsampling."""
    m = stage.config.size_multiple
    if H % m or W % m or H < m or W < m:
        raise CascadeError(f"{what} size {H}x{W} does not fit this stage",
                           f"sides that are multiples of {m} (e.g. {fitting_sizes(stage, H)})", f"{H}x{W}",
                           stage.name)


def _expect_role(stage: Stage, role: str):
    if stage.config.role != role:
        raise CascadeError(f"this needs a {role} stage", role, f"a {stage.config.describe()} stage", stage.name)


__all__ = ["LowResCond", "make_condition", "generate", "super_resolve", "refine", "run_sampler",
           "convert_level", "check_size", "fit_condition"]
