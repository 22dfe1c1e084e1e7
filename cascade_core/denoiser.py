"""Model wrappers: any stage, any parameterization, seen as ``x0 = D(x, sigma)``.

Samplers work in the variance-exploding view ``x = x0 + sigma * eps`` (the
VP latent is ``z = x / sqrt(1 + sigma^2)``). A new parameterization is a new
case in ``diffusion.predict_x0``, never a change to a sampler. Classifier-free
guidance runs the conditional and the null-class passes as one batch.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .models.stage import Stage
from .process.diffusion import predict_x0


@dataclass
class Prediction:
    """What a denoiser evaluation gives: the clean-image estimate and, where the stage learns
    its variance, the interpolation fraction between the small and large variance."""

    x0: torch.Tensor
    var_frac: torch.Tensor | None  # learned-variance interpolation in [0, 1], or None


class Denoiser:
    """A stage seen as ``x0 = D(x, sigma)`` in the VE view, whatever its parameterization.

    Holds the conditioning of one sampling run (classes, low-res image, augmentation level) and
    runs classifier-free guidance, when asked for, as one doubled batch.
    """

    def __init__(self, stage: Stage, labels=None, cond=None, aug_level=None, guidance: float = 1.0,
                 clip: bool = True):
        self.stage, self.cfg = stage, stage.config
        self.labels, self.cond, self.aug_level = labels, cond, aug_level
        self.guidance, self.clip = float(guidance), clip
        self.uses_guidance = (self.guidance != 1.0 and self.cfg.num_classes > 0
                              and labels is not None)

    def __call__(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """The clean-image estimate of ``x`` at noise level ``sigma``."""
        return self.predict(x, sigma).x0

    def predict(self, x: torch.Tensor, sigma) -> Prediction:
        """The estimate and the learned-variance fraction (None if the stage has none)."""
        sigma = torch.as_tensor(sigma, dtype=torch.float64).flatten().expand(x.shape[0])
        alpha = (1 / (1 + sigma ** 2).sqrt()).to(x.device, torch.float32).view(-1, 1, 1, 1)
        vp_sigma = (sigma / (1 + sigma ** 2).sqrt()).to(x.device, torch.float32).view(-1, 1, 1, 1)
        zt = x.float() * alpha
        c_noise = self.stage.noise_input(sigma.to(x.device))
        out = self._net(zt, c_noise)
        C = self.cfg.channels
        var_frac = (out[:, C:].float() + 1) / 2 if self.cfg.learn_sigma else None
        x0 = predict_x0(self.cfg.parameterization, out[:, :C].float(), zt, alpha=alpha,
                        sigma=vp_sigma)
        if self.clip:
            x0 = x0.clamp(-1, 1)
        return Prediction(x0, var_frac)

    def _net(self, zt, c_noise):
        dtype = self.stage.dtype
        if not self.uses_guidance:
            return self.stage(zt.to(dtype), c_noise, cond=_cast(self.cond, dtype),
                              aug_level=self.aug_level, labels=self.labels).float()
        null = torch.full_like(self.labels, -1)
        cond, aug = (None if a is None else torch.cat([a, a]) for a in (self.cond, self.aug_level))
        labels = torch.cat([self.labels, null])
        out = self.stage(torch.cat([zt, zt]).to(dtype), torch.cat([c_noise, c_noise]),
                         cond=_cast(cond, dtype), aug_level=aug, labels=labels).float()
        with_class, without = out.chunk(2)
        C = self.cfg.channels
        guided = without[:, :C] + self.guidance * (with_class[:, :C] - without[:, :C])
        return torch.cat([guided, with_class[:, C:]], dim=1)


def _cast(a, dtype):
    return a.to(dtype) if isinstance(a, torch.Tensor) and a.is_floating_point() else a
