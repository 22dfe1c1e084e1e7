"""The three stages of the shallow cascade as one module, returning each phase's losses.

How far gradients reach into the coarse stage: its training output is the
x0 estimate of **one** model evaluation (a diffusion coarse stage denoises the
ground-truth low-res image noised to a random step; a DAE denoises it at a
random sigma). In phase 3 the upsampler's and refiner's losses flow back
through that one evaluation into the coarse stage; the coarse stage's
multi-step sampling chain is never unrolled. In phase 2 that output is
detached and the coarse stage is frozen.
"""
from __future__ import annotations

import torch
from torch import nn

from cascade_core import Stage, dae_loss
from cascade_core.diffusion import _at, predict_x0, q_sample, target


def one_step(stage: Stage, x0, t, noise, cond=None, labels=None):
    """(per-example diffusion loss, x0 estimate) of one model evaluation at timesteps ``t``."""
    sched, cfg = stage.schedule, stage.config
    zt = q_sample(sched, x0, t, noise)
    aug = torch.zeros(x0.shape[0], device=x0.device) if cfg.conditioned else None
    out = stage(zt, stage.timestep_input(t), cond, aug, labels).float()
    loss = ((out - target(cfg.parameterization, sched, x0, noise, t)) ** 2).mean(dim=(1, 2, 3))
    abar = sched.alphas_cumprod
    x0_hat = predict_x0(cfg.parameterization, out, zt, _at(abar.sqrt(), t, x0), _at((1 - abar).sqrt(), t, x0))
    return loss, x0_hat.clamp(-1, 1)


class ShallowCascade(nn.Module):
    def __init__(self, coarse: Stage, upsampler: Stage, refiner: Stage, perceptual: nn.Module | None,
                 perceptual_weight: float):
        super().__init__()
        self.coarse, self.upsampler, self.refiner = coarse, upsampler, refiner
        self.perceptual, self.perceptual_weight = perceptual, perceptual_weight

    def set_phase(self, phase: int):
        """Freeze what a phase does not train: 1 trains the coarse stage, 2 the upsampler and
        refiner, 3 all three."""
        self.coarse.requires_grad_(phase in (1, 3))
        self.upsampler.requires_grad_(phase in (2, 3))
        self.refiner.requires_grad_(phase in (2, 3))

    def _coarse(self, x_low, labels, g):
        b, dev = x_low.shape[0], x_low.device
        noise = torch.randn(x_low.shape, generator=g).to(dev)
        if self.coarse.config.kind == "dae":
            sigma = torch.rand(b, generator=g).to(dev) * self.coarse.config.shallow.dae_sigma
            loss = dae_loss(self.coarse, x_low, sigma, noise, labels)
            x0 = self.coarse.net(x_low + sigma.view(-1, 1, 1, 1) * noise, sigma, labels).clamp(-1, 1)
            return loss, x0
        t = torch.randint(self.coarse.schedule.T, (b,), generator=g).to(dev)
        return one_step(self.coarse, x_low, t, noise, labels=labels)

    def _one_pass_or_diffusion(self, stage, target_img, cond, g, t_max=None):
        if stage.config.deterministic:
            out = stage.net(cond)
            return ((out - target_img) ** 2).mean(dim=(1, 2, 3)), out
        b, dev = target_img.shape[0], target_img.device
        t = torch.randint(t_max or stage.schedule.T, (b,), generator=g).to(dev)
        return one_step(stage, target_img, t, torch.randn(target_img.shape, generator=g).to(dev), cond)

    def forward(self, x_high, x_low, labels, phase: int, teacher_p: float, seed: int) -> dict:
        g = torch.Generator().manual_seed(seed)  # the step's own stream: same on every rank and on resume
        losses = {}
        coarse_loss, coarse_out = self._coarse(x_low, labels, g)
        if phase in (1, 3):
            losses["coarse"] = coarse_loss
        if phase == 1:
            return losses
        if phase == 2:
            coarse_out = coarse_out.detach()
        forced = (torch.rand(x_low.shape[0], generator=g) < teacher_p).to(x_low.device).view(-1, 1, 1, 1)
        low = torch.where(forced, x_low, coarse_out)
        losses["upsampler"], up = self._one_pass_or_diffusion(self.upsampler, x_high, low, g)
        t_max = max(1, int(self.refiner.config.refiner_max_t * self.refiner.schedule.T))
        ref_mse, refined = self._one_pass_or_diffusion(self.refiner, x_high, up, g, t_max)
        losses["refiner"] = ref_mse
        if self.perceptual is not None and self.perceptual_weight > 0:
            losses["perceptual"] = self.perceptual_weight * self.perceptual(refined, x_high)
        return losses
