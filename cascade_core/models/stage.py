"""A stage: a network (the U-Net, or a shallow one), its config and its noise schedule.

``Stage.noise_input(sigma)`` feeds the network the noise level the way it was
trained (timestep index or log-SNR), so everything above it speaks in VE
noise levels ``sigma`` only.

A stage is only that: a module holding its network, config and schedule. How a
stage is sampled (diffusion, DAE walk-back, one pass) is not its business but
the running code's: ``run.strategies`` keeps one strategy per
``config.method`` in an explicit table, and loading a file never depends on it.
"""
from __future__ import annotations

import torch
from torch import nn

from ..process.schedules import DiscreteSchedule
from .config import StageConfig
from .shallow import MODELS as SHALLOW_NETWORKS
from .unet import UNet

LOGSNR_RANGE = 20.0  # log-SNR in [-20, 20] maps linearly onto the embedding's [0, 1000]
NETWORKS = {"unet": UNet, **SHALLOW_NETWORKS}


class Stage(nn.Module):
    """One stage of a cascade: network + config + schedule."""

    def __init__(self, config: StageConfig):
        super().__init__()
        self.config = config
        self.net = NETWORKS[config.network](config)
        self.schedule = DiscreteSchedule.from_config(config.schedule)
        self.runner = None  # a compiled stand-in for self.net (run.compiling), or None

    @property
    def name(self) -> str:
        """The name stored at training time, else a description such as ``sr 16->32px``."""
        return self.config.training.get("name") or self.config.describe()

    def noise_input(self, sigma: torch.Tensor) -> torch.Tensor:
        """The network's noise-level input for VE noise level(s) ``sigma``: in [0, 1000], or the
        raw (fractional) timestep for ``timestep_raw``."""
        if self.config.noise_conditioning != "logsnr":
            return self.timestep_input(self.schedule.sigma_to_t(sigma))
        logsnr = -2 * sigma.float().clamp(min=1e-10).log()
        logsnr = logsnr.clamp(-LOGSNR_RANGE, LOGSNR_RANGE)
        return (logsnr + LOGSNR_RANGE) * (1000.0 / (2 * LOGSNR_RANGE))

    def timestep_input(self, t: torch.Tensor) -> torch.Tensor:
        """The same input for (integer training, or fractional) timesteps ``t``."""
        if self.config.noise_conditioning == "timestep_raw":
            return t.float()
        if self.config.noise_conditioning == "timestep":
            return t.float() * (1000.0 / self.schedule.T)
        return self.noise_input(self.schedule.sigmas.to(t.device)[t].float())

    def forward(self, zt, c_noise, cond=None, aug_level=None, labels=None, text=None):
        """The U-Net's raw output for ``z_t`` at noise input ``c_noise`` (diffusion stages);
        ``text``: token embeddings, for a stage conditioned on text."""
        if text is None:  # as before text existed: compiled runners keep their signature
            return (self.runner or self.net)(zt, c_noise, cond, aug_level, labels)
        return (self.runner or self.net)(zt, c_noise, cond, aug_level, labels, text)

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the weights."""
        return next(self.parameters()).dtype

    @property
    def device(self) -> torch.device:
        """The device of the weights."""
        return next(self.parameters()).device

    def num_parameters(self) -> int:
        """Number of trainable and frozen parameters."""
        return sum(p.numel() for p in self.parameters())
