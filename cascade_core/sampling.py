"""One sampler run over a stage: the settings every pipeline call shares, and the run itself."""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .denoiser import Denoiser
from .process.noise import NoiseSource
from .process.samplers import get_sampler


@dataclass(frozen=True)
class SamplingPlan:
    """How to sample a stage: steps, sampler, grid spacing, guidance, precision, progress."""

    steps: int = 30
    sampler: str = "dpmpp_2m"
    spacing: str = "karras"
    guidance: float = 1.0
    callback: Callable | None = None
    dtype: torch.dtype = torch.float32
    options: dict = field(default_factory=dict)  # sampler-specific keywords (eta, variance)


def autocast(device: torch.device, dtype: torch.dtype):
    """Autocast to ``dtype`` on ``device``'s type; a no-op for float32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def run_sampler(stage, x, sigmas, plan: SamplingPlan, noise: NoiseSource, labels=None, cond=None,
                aug_level=None):
    """Run ``plan.sampler`` over ``sigmas`` from ``x``; returns (x, last denoised estimate)."""
    device = stage.device
    model = Denoiser(stage, labels=None if labels is None else labels.to(device),
                     cond=None if cond is None else cond.to(device),
                     aug_level=None if aug_level is None else aug_level.to(device),
                     guidance=plan.guidance)
    last = {}

    def report(info):
        last["denoised"] = info["denoised"]
        if plan.callback is not None:
            plan.callback(info)

    with torch.inference_mode(), autocast(device, plan.dtype):
        x = get_sampler(plan.sampler)(model, x.to(device), sigmas, noise=noise, callback=report,
                                      **plan.options)
    return x.float(), last.get("denoised", x).float()
