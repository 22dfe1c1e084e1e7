"""Shared test fixtures: tiny stages and the exact denoiser of Gaussian data."""
from __future__ import annotations

import math

import torch

import cascade_core as cc
from cascade_core.run.denoiser import Prediction

TINY_UNET = cc.UNetConfig(base_channels=8, channel_mult=(1, 2), num_res_blocks=1,
                          attention_resolutions=(4,), num_heads=2)


def tiny_stage(role="base", resolution=8, low_res=0, seed=0, **kw) -> cc.Stage:
    torch.manual_seed(seed)
    kw.setdefault("unet", TINY_UNET)
    kw.setdefault("schedule", cc.ScheduleConfig("cosine", 100))
    stage = cc.Stage(cc.StageConfig(role=role, resolution=resolution, low_res=low_res, **kw))
    # zero-initialised output layers would make every stage the same function; perturb them
    with torch.no_grad():
        for p in stage.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return stage.eval()


class GaussianDenoiser:
    """The exact denoiser D(x, sigma) = E[x0 | x] for data x0 ~ N(mu, s^2 I)."""

    def __init__(self, mu: float, s: float):
        self.mu, self.s = mu, s

    def __call__(self, x, sigma):
        return self.mu + (self.s ** 2 / (self.s ** 2 + float(sigma) ** 2)) * (x - self.mu)

    def predict(self, x, sigma):
        return Prediction(self(x, sigma), None)

    def ode_solution(self, x_start, sigma_start, sigma_end):
        """The probability-flow ODE's exact solution from sigma_start to sigma_end."""
        ratio = math.sqrt((self.s ** 2 + sigma_end ** 2) / (self.s ** 2 + sigma_start ** 2))
        return self.mu + (x_start - self.mu) * ratio
