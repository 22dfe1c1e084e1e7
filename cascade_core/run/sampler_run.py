"""One sampler run over a stage: the denoiser built from the plan, precision, the finite watch."""
from __future__ import annotations

import contextlib

import torch

from ..base.errors import CascadeError
from ..base.precision import resolve_dtype
from ..process.noise import NoiseSource
from .plan import SamplingPlan
from .regions import MergedDenoiser


def autocast(device: torch.device, dtype):
    """Autocast to ``dtype`` ("auto", a name or a torch dtype, resolved for ``device`` by
    ``cascade_core.precision``) on ``device``'s type; a no-op for float32."""
    dtype = resolve_dtype(dtype, device)
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def run_sampler(stage, x, sigmas, *, plan: SamplingPlan, noise: NoiseSource, members: list):
    """Run the plan's sampler over ``sigmas`` from ``x`` on ``stage``'s noise grid with the
    members (``regions.member_inputs``: one over the whole canvas for a plain run) merged at
    every evaluation; returns (x, last denoised estimate)."""
    model = MergedDenoiser(stage, members, plan, canvas=tuple(x.shape[-2:]), batch=x.shape[0])
    return sample_with(model, x, sigmas, plan=plan, noise=noise)


def sample_with(model, x, sigmas, *, plan: SamplingPlan, noise: NoiseSource):
    """Run the plan's sampler over ``sigmas`` from ``x`` with a built ``model`` (a
    MergedDenoiser, a Denoiser, or anything with their ``predict``, ``stage`` and
    ``classifier``); returns (x, last denoised estimate)."""
    stage = model.stage
    device = stage.device
    last = {}
    watch = FiniteWatch(device)

    def report(info):
        last["denoised"] = info["denoised"]
        watch.step(info["i"], info["denoised"])
        if plan.callback is not None:
            plan.callback(info)

    # a guiding classifier needs autograd, which inference mode forbids
    grad_free = torch.no_grad() if model.classifier is not None else torch.inference_mode()
    # weights stored in a low precision run natively in it: autocast's float32 layer norms
    # refuse bf16 weights
    low = stage.dtype != torch.float32
    with grad_free, (contextlib.nullcontext() if low else autocast(device, plan.precision)):
        x = plan.sampler_fn(model, x.to(device), sigmas, noise=noise, callback=report,
                            **plan.options)
        watch.step(len(sigmas) - 1, x)
    watch.check(stage.name, total=len(sigmas) - 1)
    return x.float(), last.get("denoised", x).float()


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
