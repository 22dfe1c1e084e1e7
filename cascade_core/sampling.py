"""One sampler run over a stage: the settings every pipeline call shares, and the run itself."""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .denoiser import Denoiser
from .errors import CascadeError
from .precision import resolve_dtype
from .process.noise import NoiseSource
from .process.samplers import get_sampler
from .tiling import plan_tiles


@dataclass(frozen=True)
class SamplingPlan:
    """How to sample a stage: steps, sampler, grid spacing, guidance, precision, progress.

    ``classifier``/``classifier_scale``: a NoisyClassifier guiding a class-conditional base
    (ADM-G); ``clip_denoised``: clamp every clean-image estimate to [-1, 1] (ADM's
    ``clip_denoised=True``; on by default). ``sampler`` is a registered name or a function with
    the samplers' signature (how ComfyUI's SAMPLER objects run, ``nodes.comfy_samplers``)."""

    steps: int = 30
    sampler: str = "dpmpp_2m"
    spacing: str = "karras"
    guidance: float = 1.0
    callback: Callable | None = None
    dtype: torch.dtype | str = torch.float32  # or "auto"/"fp32"/"bf16"/"fp16" (precision.py)
    options: dict = field(default_factory=dict)  # sampler-specific keywords (eta, variance)
    classifier: object | None = None
    classifier_scale: float = 0.0
    clip_denoised: bool = True
    tiling: str | int = "auto"  # "auto" (by memory estimate), "off", or a tile side in pixels
    sigmas: torch.Tensor | None = None  # a grid to walk instead of steps + spacing (SIGMAS)


def autocast(device: torch.device, dtype):
    """Autocast to ``dtype`` ("auto", a name or a torch dtype, resolved for ``device`` by
    ``cascade_core.precision``) on ``device``'s type; a no-op for float32."""
    dtype = resolve_dtype(dtype, device)
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
                     guidance=plan.guidance, clip=plan.clip_denoised,
                     classifier=plan.classifier, classifier_scale=plan.classifier_scale,
                     tiles=plan_tiles(stage, x.shape, plan.tiling))
    last = {}
    watch = FiniteWatch(device)

    def report(info):
        last["denoised"] = info["denoised"]
        watch.step(info["i"], info["denoised"])
        if plan.callback is not None:
            plan.callback(info)

    # a guiding classifier needs autograd, which inference mode forbids
    grad_free = torch.no_grad() if model.classifier is not None else torch.inference_mode()
    with grad_free, autocast(device, plan.dtype):
        fn = plan.sampler if callable(plan.sampler) else get_sampler(plan.sampler)
        x = fn(model, x.to(device), sigmas, noise=noise, callback=report, **plan.options)
        watch.step(len(sigmas) - 1, x)
    watch.check(stage.name, total=len(sigmas) - 1)
    return x.float(), last.get("denoised", x).float()


def check_sigmas(sigmas, stage: str | None = None) -> torch.Tensor:
    """A given sigma grid as float64: 1-D, at least two values, finite, strictly descending and
    ending at 0 (a truncated base cuts it at its level itself)."""
    t = torch.as_tensor(sigmas).detach().to("cpu", torch.float64).flatten()
    ok = (len(t) >= 2 and bool(torch.isfinite(t).all()) and bool((t >= 0).all())
          and bool((t[1:] < t[:-1]).all()) and float(t[-1]) == 0.0)
    if not ok:
        shown = [round(float(v), 4) for v in t[:6]] + (["..."] if len(t) > 6 else [])
        raise CascadeError("SIGMAS must be a descending list of noise levels ending at 0",
                           "at least two finite values, strictly descending, the last 0 (a "
                           "truncated base stops at its level by itself)", shown, stage=stage)
    return t


class FiniteWatch:
    """Notices the first sampler step whose estimate is not finite, without slowing the sampler:
    the flag stays on the device and is read once, at the end."""

    def __init__(self, device):
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)

    def step(self, i: int, x: torch.Tensor):
        """Record step ``i`` if ``x`` holds NaN or inf and no earlier step did (no host sync)."""
        bad = ~torch.isfinite(x).all()
        self.first_bad = torch.where(bad & (self.first_bad < 0), i, self.first_bad)

    def check(self, stage: str, total: int):
        """Raise a CascadeError naming the stage and the first non-finite step, if any."""
        first = int(self.first_bad)
        if first >= 0:
            where = f"step {first + 1} of {total}" if first < total else "the final output"
            raise CascadeError(f"sampling went non-finite (NaN or inf) at {where}",
                               "finite estimates", "NaN/inf", stage=stage)
