"""Conditioning augmentation (CDM section 3): one code path for training and inference.

The level ``s`` is the pack's single schedule-independent unit: a number in
[0, 1] on the augmentation schedule stored in the SR checkpoint. ``s = 0``
leaves the image untouched, ``s = 1`` replaces it with unit Gaussian noise,
and in between ``z_s = sqrt(abar(s)) z_0 + sqrt(1 - abar(s)) eps`` is exactly
the forward process q(z_s | z_0) of Algorithm 1. The truncated path of
Algorithm 2 stops the base sampler at the same noise level (``aug_sigma``).
"""
from __future__ import annotations

import math

import kornia
import torch

from ..base.errors import CascadeError
from .noise import as_noise_source
from .schedules import cosine_alpha_bar, make_betas

# "if_steps": DeepFloyd IF stage II's noise_level, an integer step t = round(1000 s) of the
# discrete cosine schedule (diffusers' squaredcos_cap_v2, betas capped at 0.999), abar = prod
# (1 - beta) up to and including t, as its pipeline's ``add_noise`` uses it
AUG_SCHEDULES = ("cosine", "linear", "if_steps")
IF_STEPS = 1000


def aug_alpha_bar(s: torch.Tensor, schedule: str = "cosine") -> torch.Tensor:
    """abar(s) of the augmentation schedule, s in [0, 1], float64."""
    s = torch.as_tensor(s, dtype=torch.float64)
    if schedule == "cosine":
        return cosine_alpha_bar(s).clamp(0, 1)
    if schedule == "linear":  # the continuous VP schedule with beta from 0.1 to 20
        return torch.exp(-(0.1 * s + 0.5 * (20 - 0.1) * s ** 2))
    if schedule == "if_steps":
        t = (s * IF_STEPS).round().long().clamp(0, IF_STEPS - 1)
        return torch.cumprod(1 - make_betas("cosine", IF_STEPS), 0)[t]
    raise CascadeError("unknown augmentation schedule", f"one of {AUG_SCHEDULES}", repr(schedule))


def aug_sigma(s: float, schedule: str = "cosine") -> float:
    """VE noise level ``sqrt((1 - abar)/abar)`` of level ``s`` (inf at s = 1 for cosine)."""
    abar = float(aug_alpha_bar(torch.tensor(float(s)), schedule))
    return math.inf if abar <= 0 else math.sqrt((1 - abar) / abar)


def noise_augment(z0: torch.Tensor, s, noise, schedule: str = "cosine") -> torch.Tensor:
    """z_s ~ q(z_s | z_0): ``s`` a float or (B,) tensor in [0, 1]; ``noise`` a seed,
    a Generator or a NoiseSource (one stream per image)."""
    s = _levels(s, z0)
    abar = aug_alpha_bar(s.cpu(), schedule).to(device=z0.device, dtype=z0.dtype).view(-1, 1, 1, 1)
    eps = as_noise_source(noise, z0.shape[0]).randn_like(z0)
    return abar.sqrt() * z0 + (1 - abar).sqrt() * eps


def blur_augment(z: torch.Tensor, sigma) -> torch.Tensor:
    """3x3 Gaussian blur with a per-image ``sigma`` (float or (B,)); sigma 0 is the identity."""
    sigma = _levels(sigma, z, hi=None).to(z.device)
    if not bool((sigma > 0).any()):
        return z
    s2 = sigma.clamp(min=1e-3).float().view(-1, 1).expand(-1, 2).contiguous()
    blurred = kornia.filters.gaussian_blur2d(z.float(), (3, 3), s2,
                                             border_type="reflect").to(z.dtype)
    return torch.where((sigma > 0).view(-1, 1, 1, 1), blurred, z)


def condition_augment(z0: torch.Tensor, s, noise, schedule: str = "cosine",
                      blur_sigma=0.0) -> torch.Tensor:
    """The conditioning an SR stage sees: blur (if any), then Gaussian noise to level ``s``."""
    return noise_augment(blur_augment(z0, blur_sigma), s, noise, schedule=schedule)


def draw_training_augmentation(batch: int, s_max: float, blur_prob: float, blur_range, generator):
    """Algorithm 1's random s ~ U(0, s_max) per example, and a blur sigma for a
    ``blur_prob`` fraction of the batch (0 for the rest)."""
    u = torch.rand(3, batch, generator=generator, device=generator.device).cpu()
    s = u[0] * s_max
    lo, hi = blur_range
    sigma = torch.where(u[1] < blur_prob, lo + (hi - lo) * u[2], torch.zeros(()))
    return s, sigma


def _levels(v, like: torch.Tensor, hi: float | None = 1.0) -> torch.Tensor:
    t = torch.as_tensor(v, dtype=torch.float32).flatten()
    if t.numel() == 1:
        t = t.expand(like.shape[0])
    if t.numel() != like.shape[0]:
        raise CascadeError("one augmentation value per image", like.shape[0], t.numel())
    if bool((t < 0).any()) or (hi is not None and bool((t > hi).any())):
        raise CascadeError("augmentation value out of range",
                           f"[0, {hi if hi is not None else 'inf'}]",
                           [round(float(x), 4) for x in t])
    return t
