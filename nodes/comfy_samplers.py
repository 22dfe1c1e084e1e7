"""ComfyUI's own samplers (a SAMPLER from KSamplerSelect, SIGMAS from its schedulers) on our stages.

Glue only: ComfyUI's code is never imported here. When a SAMPLER object is
wired into one of our sampling nodes, ``comfy_sampler`` turns it into a
function with our samplers' signature, and ComfyUI's ``KSAMPLER.sample`` runs
on a thin wrapper of our denoiser that offers what ComfyUI's samplers reach
into:

* ``model_wrap(x, sigma, model_options=..., seed=...)`` -> the denoised
  estimate (our ``Denoiser``: any parameterization, guidance, tiles);
* ``model_wrap.inner_model.model_sampling`` (``KSAMPLER.sample``, the ancestral
  samplers) and ``model_wrap.model_patcher.get_model_object("model_sampling")``
  (the SDE samplers): our schedule's ``sigma_min``/``sigma_max`` and the
  noise scaling. The start ``x`` is already ours (noise scaled to the first
  sigma, or the refiner's noised input), so ``noise_scaling`` passes it through.

Per-step noise then comes from ComfyUI's sampler, seeded by the node's seed:
one generator (or one Brownian tree for the SDE samplers) for the whole
batch, not one stream per image.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from . import widgets as W
from ._core import core

log = logging.getLogger(__name__)
# below this fraction of the stage's top sigma (capped at the Karras start), a grid starts on a
# partly denoised image: KarrasScheduler's default sigma_max of 14.6 suits SD, not our stages
LOW_START = 0.5


@dataclass
class CascadeModelSampling:
    """The part of ComfyUI's ``model_sampling`` its samplers read, for one of our stages."""

    sigma_min: torch.Tensor
    sigma_max: torch.Tensor

    def noise_scaling(self, sigma, noise, latent_image, max_denoise=False):
        """Our start is already scaled (see the module docstring): pass it through."""
        return noise

    def inverse_noise_scaling(self, sigma, latent):
        """Nothing to undo in the VE view."""
        return latent


class _Inner:
    def __init__(self, model_sampling):
        self.model_sampling = model_sampling


class _Patcher:
    def __init__(self, model_sampling):
        self.model_sampling = model_sampling

    def get_model_object(self, name):
        if name != "model_sampling":
            raise core.CascadeError("a ComfyUI sampler asked the stage for something it does "
                                    "not have", "model_sampling", repr(name))
        return self.model_sampling


class ComfyModelWrap:
    """Our denoiser in the shape of ComfyUI's ``CFGGuider``-made model wrapper."""

    def __init__(self, denoiser, schedule):
        sampling = CascadeModelSampling(torch.tensor(schedule.sigma_min, dtype=torch.float32),
                                        torch.tensor(schedule.sigma_max, dtype=torch.float32))
        self.inner_model = _Inner(sampling)
        self.model_patcher = _Patcher(sampling)
        self.denoiser = denoiser

    def __call__(self, x, sigma, model_options=None, seed=None, **kwargs):
        return self.denoiser(x, sigma).to(x.dtype)


def comfy_sampler(sampler, stage, seed: int):
    """A function with our samplers' signature that runs ComfyUI's SAMPLER ``sampler``."""
    if not callable(getattr(sampler, "sample", None)):
        raise core.CascadeError("the sampler input is not a ComfyUI SAMPLER",
                                "an object from KSamplerSelect (or another SAMPLER node)",
                                type(sampler).__name__, stage=stage.name)

    def run(model, x, sigmas, noise=None, callback=None, **options):
        wrap = ComfyModelWrap(model, stage.schedule)
        sig = torch.as_tensor(sigmas, dtype=torch.float32, device=x.device)

        def report(i, denoised, current, total):
            if callback is not None:
                callback({"i": i, "total": total, "x": current, "sigma": float(sig[i]),
                          "denoised": denoised})

        return sampler.sample(wrap, sig, extra_args={"seed": int(seed)}, callback=report,
                              noise=x, latent_image=torch.zeros_like(x), denoise_mask=None,
                              disable_pbar=True)

    return run


def warn_low_start(stage, sigmas) -> str | None:
    """A warning when a SIGMAS grid starts far below the stage's top noise level."""
    top = min(stage.schedule.sigma_max, core.process.schedules.KARRAS_SIGMA_MAX)
    first = float(torch.as_tensor(sigmas).flatten()[0])
    if stage.config.role != "refiner" and first < LOW_START * top:
        msg = (f"[{stage.name}] SIGMAS start at {first:.3g}, far below this stage's {top:.3g}: "
               "the sample starts from a partly denoised image (KarrasScheduler's default "
               "sigma_max of 14.6 suits SD, not these stages; use Cascade Sigmas or raise "
               "sigma_max)")
        log.warning(msg)
        return msg
    return None


class CDMCascadeSigmas:
    """SIGMAS for a stage, steps and spacing: what ComfyUI's BasicScheduler gives for a MODEL,
    for our stages (which are not ComfyUI MODELs)."""

    CATEGORY = W.CATEGORY
    RETURN_TYPES = ("SIGMAS",)
    RETURN_NAMES = ("sigmas",)
    OUTPUT_TOOLTIPS = ("the noise levels, highest first and ending at 0, for a sampling node's "
                       "sigmas input or ComfyUI's SamplerCustom-style nodes",)
    FUNCTION = "sigmas"
    DESCRIPTION = ("The noise levels (SIGMAS) a stage samples with for a number of steps and a "
                   "spacing: ComfyUI's BasicScheduler for our stages, which are not ComfyUI "
                   "MODELs. Edit or split them with ComfyUI's sigma nodes and feed them back.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"stage": W.stage("the stage the sigmas are for"), "steps": W.steps(30),
                             "spacing": W.spacing()}}

    def sigmas(self, stage, steps, spacing):
        grid = core.sampling_sigmas(stage.stage.schedule, steps, spacing)
        return (grid.float(),)
