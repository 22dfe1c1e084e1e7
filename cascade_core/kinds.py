"""The stage kinds: how each one samples, upsamples, refines and takes a training pass.

* ``DiffusionStage``: the U-Net, sampled by any sampler of ``process.samplers``;
* ``DaeStage``: a denoising autoencoder, sampled by a short denoise / re-noise chain;
* ``OnePassStage``: one forward pass maps input to output (PixelShuffle and
  ResNet upsamplers, conv and ViT refiners), with no noise and no seed.

``Stage(config)`` builds the class registered for ``config.kind``; importing
this module registers them.
"""
from __future__ import annotations

import math

import torch

from .errors import check_finite
from .handover import LowResCond, convert_level, make_condition
from .losses import dae_loss
from .models.stage import Stage
from .process.augment import aug_sigma
from .process.diffusion import per_example, predict_x0, q_sample, target
from .process.noise import AUGMENT_SEED_OFFSET, NoiseSource
from .process.schedules import karras_sigmas, sampling_sigmas, truncate_sigmas
from .sampling import SamplingPlan, autocast, check_sigmas, run_sampler


def _report(plan: SamplingPlan, info: dict):
    if plan.callback is not None:
        plan.callback(info)


class DiffusionStage(Stage, kinds=("diffusion",)):
    """A diffusion U-Net: sampled from noise, conditioned on a low-res image, or from a noised
    input."""

    def sample_base(self, *, batch, seed, plan, labels, truncate_s, aug_schedule):
        """Sample from z_T; with ``truncate_s`` stop exactly at that level and hand over z_s."""
        cfg, s = self.config, truncate_s
        noise = NoiseSource.from_seed(seed, batch)
        sigmas = self.grid(plan)
        stop = aug_sigma(s, aug_schedule) if s > 0 else 0.0
        shape = (cfg.channels, cfg.resolution, cfg.resolution)
        if stop >= float(sigmas[0]):  # the whole reverse process lies above s: z_s is the noise
            z = noise.randn(shape)
            return torch.zeros_like(z), LowResCond(z, torch.full((batch,), s), aug_schedule,
                                                   clean=None, labels=labels)
        sigmas = truncate_sigmas(sigmas, stop)
        x = noise.randn(shape, self.device) * math.sqrt(1 + float(sigmas[0]) ** 2)
        x, denoised = run_sampler(self, x, sigmas, plan=plan, noise=noise, labels=labels)
        z = x / math.sqrt(1 + stop ** 2)  # VE -> VP: exactly q(z_s | z_0)'s scaling
        image = (denoised if s > 0 else x).clamp(-1, 1).cpu()
        return image, LowResCond(z.cpu(), torch.full((batch,), s), aug_schedule, clean=image,
                                 labels=labels)

    def sample_upsample(self, cond, *, seed, plan, labels):
        """Sample at ``factor x`` the size of ``cond.image``, conditioned on it and its level."""
        cfg = self.config
        B, C, h, w = cond.image.shape
        level = convert_level(cond.level, cond.schedule, cfg.augmentation.schedule)
        noise = NoiseSource.from_seed(seed, B)
        sigmas = self.grid(plan)
        start = noise.randn((C, h * cfg.factor, w * cfg.factor), self.device)
        x = start * math.sqrt(1 + float(sigmas[0]) ** 2)
        x, _ = run_sampler(self, x, sigmas, plan=plan, noise=noise, labels=labels, cond=cond.image,
                           aug_level=level)
        return x.clamp(-1, 1).cpu()

    def sample_refine(self, image, *, strength, seed, plan, labels, s):
        """Noise ``image`` to ``strength`` of the trained range and denoise it, conditioned on
        itself."""
        cfg = self.config
        B, C, H, W = image.shape
        s = cfg.augmentation.default_s if s is None else s
        noise = NoiseSource.from_seed(seed, B)
        cond = make_condition(image, s, NoiseSource.from_seed(seed + AUGMENT_SEED_OFFSET, B),
                              schedule=cfg.augmentation.schedule)
        if plan.sigmas is not None:  # a given grid (ComfyUI's SIGMAS) says where to start
            sigmas = check_sigmas(plan.sigmas, stage=self.name)
            sigma_start = float(sigmas[0])
        else:
            t_start = strength * cfg.refiner_max_t * (self.schedule.T - 1)
            sigma_start = float(self.schedule.t_to_sigma(torch.tensor(t_start)))
            sigmas = self._partial_sigmas(sigma_start, int(plan.steps), plan.spacing)
        x = image.to(self.device).float() + noise.randn((C, H, W), self.device) * sigma_start
        x, _ = run_sampler(self, x, sigmas, plan=plan, noise=noise, labels=labels, cond=cond.image,
                           aug_level=cond.level)
        return x.clamp(-1, 1).cpu()

    def grid(self, plan) -> torch.Tensor:
        """The sampler's sigmas: the plan's own (ComfyUI's SIGMAS, checked) or the schedule's."""
        if plan.sigmas is not None:
            return check_sigmas(plan.sigmas, stage=self.name)
        return sampling_sigmas(self.schedule, plan.steps, plan.spacing)

    def _partial_sigmas(self, sigma_start: float, steps: int, spacing: str) -> torch.Tensor:
        sched = self.schedule
        if spacing == "karras":
            sig = karras_sigmas(steps, min(sched.sigma_min, sigma_start), sigma_start)
        else:
            t_start = float(sched.sigma_to_t(torch.tensor([sigma_start]))[0])
            sig = sched.t_to_sigma(torch.linspace(t_start, 0, steps, dtype=torch.float64))
        return torch.cat([sig, sig.new_zeros(1)])

    def training_pass(self, target_image, *, generator, cond=None, labels=None, noise=None,
                      max_t=None):
        """Diffusion loss and x0 estimate of one evaluation at a random timestep (drawn first)."""
        b, dev = target_image.shape[0], target_image.device
        t = torch.randint(max_t or self.schedule.T, (b,), generator=generator).to(dev)
        if noise is None:
            noise = torch.randn(target_image.shape, generator=generator).to(dev)
        cfg, sched = self.config, self.schedule
        zt = q_sample(sched, target_image, t, noise=noise)
        aug = torch.zeros(b, device=dev) if cfg.conditioned else None
        out = self(zt, self.timestep_input(t), cond=cond, aug_level=aug, labels=labels).float()
        tgt = target(cfg.parameterization, sched, target_image, noise=noise, t=t)
        loss = ((out - tgt) ** 2).mean(dim=(1, 2, 3))
        abar = sched.alphas_cumprod
        alpha = per_example(abar.sqrt(), t, target_image)
        sigma = per_example((1 - abar).sqrt(), t, target_image)
        x0 = predict_x0(cfg.parameterization, out, zt, alpha=alpha, sigma=sigma)
        return loss, x0.clamp(-1, 1)


class DaeStage(Stage, kinds=("dae",)):
    """A denoising autoencoder base stage (shallow cascade), sampled by walk-back."""

    def chain_sigmas(self) -> torch.Tensor:
        """The sampling chain's noise levels: geometric from dae_sigma down to 2% of it."""
        s = self.config.shallow
        return torch.logspace(0, -1.7, s.dae_steps, base=10.0, dtype=torch.float64) * s.dae_sigma

    @torch.no_grad()
    def walk_back(self, x: torch.Tensor, noise, labels=None, callback=None) -> torch.Tensor:
        """x <- D(x, sigma_k); re-noise to sigma_{k+1}; ...; return D at the end."""
        sig = self.chain_sigmas()
        for k, sigma in enumerate(sig.tolist()):
            x0 = self.net(x, torch.full((x.shape[0],), sigma, device=x.device), labels).clamp(-1, 1)
            if callback is not None:
                callback({"i": k, "total": len(sig), "x": x, "sigma": sigma, "denoised": x0})
            x = x0 if k == len(sig) - 1 else x0 + float(sig[k + 1]) * noise.randn_like(x0)
        return x

    def sample_base(self, *, batch, seed, plan, labels, truncate_s, aug_schedule):
        """Walk back from noise; with ``truncate_s`` > 0 hand over z_0 re-noised to s (there is
        no chain to cut)."""
        cfg = self.config
        noise = NoiseSource.from_seed(seed, batch)
        start = noise.randn((cfg.channels, cfg.resolution, cfg.resolution), self.device)
        x = start * cfg.shallow.dae_sigma
        with torch.inference_mode(), autocast(self.device, plan.dtype):
            image = self.walk_back(x, noise, None if labels is None else labels.to(self.device),
                                   callback=plan.callback)
        check_finite("the DAE chain's output", image, self.name)
        image = image.float().clamp(-1, 1).cpu()
        if truncate_s > 0:
            cond = make_condition(image, truncate_s,
                                  NoiseSource.from_seed(seed + AUGMENT_SEED_OFFSET, batch),
                                  schedule=aug_schedule)
            cond.labels = labels
            return image, cond
        return image, LowResCond(image, torch.zeros(batch), aug_schedule, clean=image,
                                 labels=labels)

    def training_pass(self, target_image, *, generator, cond=None, labels=None, noise=None,
                      max_t=None):
        """DAE loss and clean estimate at a random noise level in [0, dae_sigma) (drawn first)."""
        b, dev = target_image.shape[0], target_image.device
        sigma = torch.rand(b, generator=generator).to(dev) * self.config.shallow.dae_sigma
        if noise is None:
            noise = torch.randn(target_image.shape, generator=generator).to(dev)
        loss = dae_loss(self, target_image, sigma, noise=noise, labels=labels)
        x0 = self.net(target_image + sigma.view(-1, 1, 1, 1) * noise, sigma, labels).clamp(-1, 1)
        return loss, x0


class OnePassStage(Stage, kinds=("pixelshuffle", "resnet", "conv", "vit")):
    """One forward pass maps input to output; trained with teacher forcing, not noise, so it
    takes no seed."""

    def _one_pass(self, x, plan: SamplingPlan):
        with torch.inference_mode(), autocast(self.device, plan.dtype):
            out = self.net(x.to(self.device, torch.float32)).float()
        check_finite("the one-pass output", out, self.name)
        _report(plan, {"i": 0, "total": 1, "x": x, "sigma": 0.0, "denoised": out})
        return out.cpu()

    def sample_upsample(self, cond, *, seed, plan, labels):
        """One pass over the un-noised image (the augmented one when no clean copy travels
        along)."""
        source = cond.clean if cond.clean is not None else cond.image
        return self._one_pass(source, plan).clamp(-1, 1)

    def sample_refine(self, image, *, strength, seed, plan, labels, s):
        """Blend the input with the one-pass output by ``strength``."""
        x = image.float()
        return (x + strength * (self._one_pass(x, plan) - x)).clamp(-1, 1)

    def training_pass(self, target_image, *, generator, cond=None, labels=None, noise=None,
                      max_t=None):
        """MSE of the one-pass output of ``cond``; draws nothing."""
        out = self.net(cond)
        return ((out - target_image) ** 2).mean(dim=(1, 2, 3)), out
