"""A stage: its network (the U-Net, or a shallow kind), its config and its noise schedule.

``Stage.net_output(z_t, sigma, ...)`` feeds the network the noise level the way
it was trained (timestep index or log-SNR), so everything above it speaks in
sigmas only.
"""
from __future__ import annotations

import torch
from torch import nn

from . import shallow
from .config import StageConfig
from .schedules import DiscreteSchedule
from .unet import UNet

LOGSNR_RANGE = 20.0  # log-SNR in [-20, 20] maps linearly onto the embedding's [0, 1000]


class Stage(nn.Module):
    def __init__(self, config: StageConfig):
        super().__init__()
        self.config = config
        self.net = UNet(config) if config.kind == "diffusion" else shallow.build(config)
        self.schedule = DiscreteSchedule.from_config(config.schedule)

    @property
    def name(self) -> str:
        return self.config.training.get("name") or self.config.describe()

    def noise_input(self, sigma: torch.Tensor) -> torch.Tensor:
        """The network's noise-level input for VE noise level(s) ``sigma``, in [0, 1000]."""
        if self.config.noise_conditioning == "timestep":
            return self.schedule.sigma_to_t(sigma) * (1000.0 / self.schedule.T)
        logsnr = -2 * sigma.float().clamp(min=1e-10).log()
        return ((logsnr.clamp(-LOGSNR_RANGE, LOGSNR_RANGE) + LOGSNR_RANGE) * (1000.0 / (2 * LOGSNR_RANGE)))

    def timestep_input(self, t: torch.Tensor) -> torch.Tensor:
        """The same input for integer training timesteps ``t``."""
        if self.config.noise_conditioning == "timestep":
            return t.float() * (1000.0 / self.schedule.T)
        return self.noise_input(self.schedule.sigmas.to(t.device)[t].float())

    def forward(self, zt, c_noise, cond=None, aug_level=None, labels=None):
        return self.net(zt, c_noise, cond, aug_level, labels)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
