"""How each method samples a stage: the explicit table the pipeline looks up by ``config.method``.

* ``diffusion``: the U-Net, sampled from noise by any sampler of ``process.samplers``;
* ``dae``: a denoising autoencoder, sampled by a short denoise / re-noise chain (walk-back);
* ``one_pass``: one forward pass maps input to output (PixelShuffle and ResNet upsamplers,
  conv and ViT refiners), with no noise and no seed.

Each strategy implements what its roles need (``base``, ``upsample``, ``refine``),
always as ``(stage, plan, cond, seed)``; the pipeline has checked the role, the
sizes and the conditioning before it calls one.
"""
from __future__ import annotations

import math

import torch

from ..base.errors import CascadeError, check_finite
from ..models.stage import Stage
from ..process.noise import AUGMENT_SEED_OFFSET, NoiseSource
from .conditioning import Conditioning
from .denoiser import NetInputs
from .handover import LowResCond, convert_level, make_condition, upsampled_condition
from .plan import SamplingPlan, sigma_grid
from .regions import Region, member_inputs
from .sampler_run import autocast, run_sampler


class Strategy:
    """What a method can do; a role it cannot play is a clear error."""

    name = "?"

    def base(self, stage: Stage, plan: SamplingPlan, cond: Conditioning, *, seed: int):
        """(images, LowResCond handover) of a base stage."""
        raise CascadeError(f"a {self.name} stage cannot generate images", "a base stage",
                           stage.config.describe(), stage=stage.name)

    def upsample(self, stage: Stage, plan: SamplingPlan, cond: Conditioning, *, seed: int):
        """The output of an SR stage conditioned on ``cond.lowres``."""
        raise CascadeError(f"a {self.name} stage cannot upsample", "an sr stage",
                           stage.config.describe(), stage=stage.name)

    def refine(self, stage: Stage, plan: SamplingPlan, cond: Conditioning, *, seed: int):
        """``cond.image`` refined from the plan's partial start."""
        raise CascadeError(f"a {self.name} stage cannot refine", "a refiner stage",
                           stage.config.describe(), stage=stage.name)


class Diffusion(Strategy):
    """A diffusion U-Net: from noise, conditioned on a low-res image, or from a noised input.
    Every run merges members on one canvas (``run.regions``): the stage itself over the whole
    canvas, or the ``cond.regions`` it was given."""

    name = "diffusion"

    def base(self, stage, plan, cond, *, seed):
        """Sample from z_T; under a truncated start stop exactly at s and hand over z_s."""
        cfg, start = stage.config, plan.start
        s = start.level if start.mode == "truncated" else 0.0
        noise = NoiseSource.from_seed(seed, cond.batch)
        sigmas = sigma_grid(plan, stage).sigmas
        shape = (cfg.channels, *(cond.canvas or (cfg.resolution, cfg.resolution)))
        handover = dict(level=torch.full((cond.batch,), s), schedule=start.schedule,
                        labels=cond.labels, regions=cond.regions)
        if len(sigmas) == 1:  # the whole reverse process lies above s: z_s is the noise
            z = noise.randn(shape)
            return torch.zeros_like(z), LowResCond(z, clean=None, **handover)
        stop = float(sigmas[-1])
        x = noise.randn(shape, stage.device) * math.sqrt(1 + float(sigmas[0]) ** 2)
        x, denoised = run_sampler(stage, x, sigmas, plan=plan, noise=noise,
                                  members=_members(stage, cond, lambda member: NetInputs()))
        z = x / math.sqrt(1 + stop ** 2)  # VE -> VP: exactly q(z_s | z_0)'s scaling
        image = (denoised if s > 0 else x).clamp(-1, 1).cpu()
        return image, LowResCond(z.cpu(), clean=image, **handover)

    def upsample(self, stage, plan, cond, *, seed):
        """Sample at ``factor x`` the low-res image's size, conditioned on it and its level (each
        member on its own augmentation schedule)."""
        cfg, low = stage.config, cond.lowres
        B, C, h, w = low.image.shape

        def inputs_for(member):
            mcfg = member.config
            if mcfg.augmentation.apply == "upsampled":  # IF stage II: s is the stage's own level
                image, level = upsampled_condition(low, size=(h * cfg.factor, w * cfg.factor),
                                                   schedule=mcfg.augmentation.schedule)
                return NetInputs(cond=image, aug_level=level)
            return NetInputs(cond=low.image, aug_level=convert_level(
                low.level, low.schedule, mcfg.augmentation.schedule))
        noise = NoiseSource.from_seed(seed, B)
        sigmas = sigma_grid(plan, stage).sigmas
        start = noise.randn((C, h * cfg.factor, w * cfg.factor), stage.device)
        x = start * math.sqrt(1 + float(sigmas[0]) ** 2)
        x, _ = run_sampler(stage, x, sigmas, plan=plan, noise=noise,
                           members=_members(stage, cond, inputs_for))
        return x.clamp(-1, 1).cpu()

    def refine(self, stage, plan, cond, *, seed):
        """Noise the image to the start level and denoise it, conditioned on itself augmented
        to ``cond.image_s`` (the stage's default when None; each member on its schedule)."""
        image = cond.image
        B, C, H, W = image.shape

        def inputs_for(member):
            mcfg = member.config
            s = mcfg.augmentation.default_s if cond.image_s is None else cond.image_s
            own = make_condition(image, s, NoiseSource.from_seed(seed + AUGMENT_SEED_OFFSET, B),
                                 schedule=mcfg.augmentation.schedule)
            return NetInputs(cond=own.image, aug_level=own.level)
        noise = NoiseSource.from_seed(seed, B)
        grid = sigma_grid(plan, stage)
        x = image.to(stage.device).float() + noise.randn((C, H, W), stage.device) * grid.start
        x, _ = run_sampler(stage, x, grid.sigmas, plan=plan, noise=noise,
                           members=_members(stage, cond, inputs_for))
        return x.clamp(-1, 1).cpu()


def _members(stage, cond: Conditioning, inputs_for) -> list:
    """The run's members: ``cond.regions``, or the stage over the whole canvas with the run's
    classes and prompt."""
    regions = cond.regions or (Region(stage, cond.labels, text=cond.text),)
    for r in regions:
        if r.stage.config.role != stage.config.role or r.stage.config.method != "diffusion":
            raise CascadeError("every region of a run must be a diffusion stage of the run's role",
                               f"{stage.config.role} diffusion stages",
                               r.stage.config.describe(), stage=r.stage.name)
    return member_inputs(stage, regions, batch=cond.batch, inputs_for=inputs_for)


class WalkBack(Strategy):
    """A denoising autoencoder base stage (shallow cascade), sampled by walk-back: x <- D(x);
    re-noise to the next level; ...; D at the end."""

    name = "dae"

    @staticmethod
    def chain_sigmas(stage: Stage) -> torch.Tensor:
        """The chain's noise levels: geometric from dae_sigma down to 2% of it."""
        s = stage.config.shallow
        return torch.logspace(0, -1.7, s.dae_steps, base=10.0, dtype=torch.float64) * s.dae_sigma

    def base(self, stage, plan, cond, *, seed):
        """Walk back from noise; under a truncated start hand over z_0 re-noised to s (there is
        no chain to cut)."""
        cfg, start = stage.config, plan.start
        noise = NoiseSource.from_seed(seed, cond.batch)
        x = noise.randn((cfg.channels, cfg.resolution, cfg.resolution),
                        stage.device) * cfg.shallow.dae_sigma
        labels = None if cond.labels is None else cond.labels.to(stage.device)
        with torch.inference_mode(), autocast(stage.device, plan.precision):
            image = self._walk(stage, x, noise, labels=labels, callback=plan.callback)
        check_finite("the DAE chain's output", image, stage.name)
        image = image.float().clamp(-1, 1).cpu()
        if start.mode == "truncated":
            handed = make_condition(image, start.level,
                                    NoiseSource.from_seed(seed + AUGMENT_SEED_OFFSET, cond.batch),
                                    schedule=start.schedule)
            handed.labels = cond.labels
            return image, handed
        return image, LowResCond(image, torch.zeros(cond.batch), start.schedule, clean=image,
                                 labels=cond.labels)

    def _walk(self, stage, x, noise, *, labels, callback):
        sig = self.chain_sigmas(stage)
        for k, sigma in enumerate(sig.tolist()):
            x0 = stage.net(x, torch.full((x.shape[0],), sigma, device=x.device),
                           labels).clamp(-1, 1)
            if callback is not None:
                callback({"i": k, "total": len(sig), "x": x, "sigma": sigma, "denoised": x0})
            x = x0 if k == len(sig) - 1 else x0 + float(sig[k + 1]) * noise.randn_like(x0)
        return x


class OnePass(Strategy):
    """One forward pass maps input to output; trained with teacher forcing, not noise, so it
    takes no seed."""

    name = "one-pass"

    @staticmethod
    def _run(stage, x, plan: SamplingPlan):
        with torch.inference_mode(), autocast(stage.device, plan.precision):
            out = stage.net(x.to(stage.device, torch.float32)).float()
        check_finite("the one-pass output", out, stage.name)
        if plan.callback is not None:
            plan.callback({"i": 0, "total": 1, "x": x, "sigma": 0.0, "denoised": out})
        return out.cpu()

    def upsample(self, stage, plan, cond, *, seed):
        """One pass over the un-noised image (the augmented one when no clean copy travels
        along)."""
        low = cond.lowres
        source = low.clean if low.clean is not None else low.image
        return self._run(stage, source, plan).clamp(-1, 1)

    def refine(self, stage, plan, cond, *, seed):
        """Blend the input with the one-pass output by the strength."""
        x = cond.image.float()
        return (x + plan.start.level * (self._run(stage, x, plan) - x)).clamp(-1, 1)


# config.method -> how it samples
STRATEGIES = {"diffusion": Diffusion(), "dae": WalkBack(), "one_pass": OnePass()}


def strategy_for(stage: Stage) -> Strategy:
    """The strategy of ``stage``'s method."""
    return STRATEGIES[stage.config.method]
