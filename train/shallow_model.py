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

from cascade_core import Stage, training_pass


class ShallowCascade(nn.Module):
    def __init__(self, coarse: Stage, upsampler: Stage, refiner: Stage,
                 perceptual: nn.Module | None, perceptual_weight: float):
        super().__init__()
        self.coarse, self.upsampler, self.refiner = coarse, upsampler, refiner
        self.perceptual, self.perceptual_weight = perceptual, perceptual_weight

    def set_phase(self, phase: int):
        """Freeze what a phase does not train: 1 trains the coarse stage, 2 the upsampler and
        refiner, 3 all three."""
        self.coarse.requires_grad_(phase in (1, 3))
        self.upsampler.requires_grad_(phase in (2, 3))
        self.refiner.requires_grad_(phase in (2, 3))

    def forward(self, x_high, x_low, labels, phase: int, teacher_p: float, seed: int) -> dict:
        g = torch.Generator().manual_seed(seed)  # the step's own stream: same on resume
        losses = {}
        noise = torch.randn(x_low.shape, generator=g).to(x_low.device)
        coarse = training_pass(self.coarse, x_low, g, labels=labels, noise=noise)
        coarse_out = coarse["x0"]
        if phase in (1, 3):
            losses["coarse"] = coarse["loss"]
        if phase == 1:
            return losses
        if phase == 2:
            coarse_out = coarse_out.detach()
        forced = torch.rand(x_low.shape[0], generator=g) < teacher_p
        forced = forced.to(x_low.device).view(-1, 1, 1, 1)
        low = torch.where(forced, x_low, coarse_out)
        upsampled = training_pass(self.upsampler, x_high, g, cond=low)
        losses["upsampler"], up = upsampled["loss"], upsampled["x0"]
        refining = training_pass(self.refiner, x_high, g, cond=up)
        losses["refiner"], refined = refining["loss"], refining["x0"]
        if self.perceptual is not None and self.perceptual_weight > 0:
            losses["perceptual"] = self.perceptual_weight * self.perceptual(refined, x_high)
        return losses
