"""One training evaluation of any stage, by its method: what the shallow recipe trains with.

The shallow-cascade recipe trains three stages of any method together and
feeds each stage's clean-image estimate to the next (teacher forcing), so it
needs, per stage, a loss and that estimate from one evaluation. A diffusion
stage gets both from ``losses.training_loss``, the same function the stage
recipe (``train.stage1/2/3``) trains with; a DAE from ``losses.dae_loss``; a
one-pass stage from its output's MSE.

Random draws come from ``generator`` in a fixed order (a timestep or noise
level first, then the noise unless it is given), so a recipe that passes the
same generator is reproducible.
"""
from __future__ import annotations

import torch

from ..models.stage import Stage
from .losses import dae_loss, training_loss


def _diffusion(stage: Stage, target, generator, *, cond, labels, noise) -> dict:
    """A timestep (refiners: in their trained low-noise range), the noise, ``training_loss``."""
    cfg, dev = stage.config, target.device
    top = stage.schedule.T
    if cfg.role == "refiner":
        top = max(1, int(cfg.refiner_max_t * top))
    t = torch.randint(top, (target.shape[0],), generator=generator).to(dev)
    if noise is None:
        noise = torch.randn(target.shape, generator=generator).to(dev)
    batch = {"x0": target, "t": t, "noise": noise, "cond": cond, "label": labels}
    if cfg.conditioned and cfg.aug_input:  # the level the condition was made at: clean
        batch["s"] = torch.zeros(target.shape[0], device=dev)
    return training_loss(stage, batch)


def _dae(stage: Stage, target, generator, *, cond, labels, noise) -> dict:
    """A noise level in [0, dae_sigma), the noise, ``dae_loss``."""
    dev = target.device
    sigma = torch.rand(target.shape[0], generator=generator).to(dev) * \
        stage.config.shallow.dae_sigma
    if noise is None:
        noise = torch.randn(target.shape, generator=generator).to(dev)
    return dae_loss(stage, target, sigma, noise=noise, labels=labels)


def _one_pass(stage: Stage, target, generator, *, cond, labels, noise) -> dict:
    """The MSE of one pass over ``cond``; draws nothing."""
    out = stage.net(cond)
    return {"loss": ((out - target) ** 2).mean(dim=(1, 2, 3)), "x0": out}


# config.method -> its training evaluation
PASSES = {"diffusion": _diffusion, "dae": _dae, "one_pass": _one_pass}


def training_pass(stage: Stage, target: torch.Tensor, generator: torch.Generator, *, cond=None,
                  labels=None, noise=None) -> dict:
    """``{"loss": per-example loss, "x0": clean-image estimate, ...}`` of one training evaluation
    of ``stage`` towards ``target``, conditioned on ``cond`` (SR: the low-res image; refiner and
    one-pass stages: their input) and ``labels``."""
    return PASSES[stage.config.method](stage, target, generator, cond=cond, labels=labels,
                                        noise=noise)
