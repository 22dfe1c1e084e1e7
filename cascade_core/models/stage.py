"""A stage: its network (the U-Net, or a shallow kind), its config and its noise schedule.

``Stage.noise_input(sigma)`` feeds the network the noise level the way it was
trained (timestep index or log-SNR), so everything above it speaks in sigmas
only.

``Stage(config)`` builds the subclass registered for ``config.kind``
(``cascade_core.kinds``): each kind knows how it samples a base image,
upsamples, refines and takes one training pass, so the pipeline and the
training recipes call those methods and never ask a stage its kind.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import CascadeError
from ..process.schedules import DiscreteSchedule
from .config import StageConfig
from .shallow import MODELS as SHALLOW_NETWORKS
from .unet import UNet

LOGSNR_RANGE = 20.0  # log-SNR in [-20, 20] maps linearly onto the embedding's [0, 1000]
NETWORKS = {"diffusion": UNet, **SHALLOW_NETWORKS}


class Stage(nn.Module):
    """One stage of a cascade: network + config + schedule, with kind-specific sampling methods."""

    _kinds: dict[str, type] = {}

    def __init_subclass__(cls, kinds: tuple = (), **kwargs):
        super().__init_subclass__(**kwargs)
        for kind in kinds:
            Stage._kinds[kind] = cls

    def __new__(cls, config: StageConfig | None = None, *args, **kwargs):
        """Build the registered subclass of ``config.kind`` (copies keep their class)."""
        if cls is Stage and config is not None:
            if config.kind not in Stage._kinds:
                raise CascadeError("no stage class for this kind",
                                   f"one of {sorted(Stage._kinds)}", config.kind)
            cls = Stage._kinds[config.kind]
        return super().__new__(cls)

    def __init__(self, config: StageConfig):
        super().__init__()
        self.config = config
        self.net = NETWORKS[config.kind](config)
        self.schedule = DiscreteSchedule.from_config(config.schedule)
        self.runner = None  # a compiled stand-in for self.net (cascade_core.compiling), or None

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

    def forward(self, zt, c_noise, cond=None, aug_level=None, labels=None):
        """The network's raw output for ``z_t`` at noise input ``c_noise`` (diffusion kinds)."""
        return (self.runner or self.net)(zt, c_noise, cond, aug_level, labels)

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

    # What each kind implements (cascade_core.kinds); the pipeline validates roles and sizes first.

    def sample_base(self, *, batch: int, seed: int, plan, labels, truncate_s: float,
                    aug_schedule: str):
        """(images, LowResCond) of a base stage; ``truncate_s`` > 0 hands over z_s."""
        raise CascadeError("this stage cannot generate images", "a base stage",
                           self.config.describe(), stage=self.name)

    def sample_upsample(self, cond, *, seed: int, plan, labels):
        """The output of an SR stage conditioned on ``cond`` (a LowResCond)."""
        raise CascadeError("this stage cannot upsample", "an sr stage", self.config.describe(),
                           stage=self.name)

    def sample_refine(self, image, *, strength: float, seed: int, plan, labels, s: float | None):
        """``image`` refined at ``strength`` (0 returns it unchanged)."""
        raise CascadeError("this stage cannot refine", "a refiner stage", self.config.describe(),
                           stage=self.name)

    def training_pass(self, target, *, generator: torch.Generator, cond=None, labels=None,
                      noise=None, max_t: int | None = None):
        """(per-example loss, clean-image estimate) of one training evaluation towards ``target``.

        Random draws come from ``generator`` in a fixed order (a timestep or noise level first,
        then the noise unless ``noise`` is given), so a recipe that passes the same generator is
        reproducible.
        """
        raise NotImplementedError
