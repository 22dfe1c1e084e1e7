"""The Gaussian forward process q(x_t | x_0), its posterior, and training targets.

All coefficients are computed in float64 from the schedule and cast to the
data's dtype at the end; ``t`` is a LongTensor of indices into the schedule.
"""
from __future__ import annotations

import torch

from .schedules import DiscreteSchedule

PARAMETERIZATIONS = ("eps", "x0", "v")


def per_example(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Gather per-sample coefficients and shape them to broadcast against ``like``."""
    out = values.to(like.device)[t.to(like.device)]
    return out.to(like.dtype).view(-1, *([1] * (like.ndim - 1)))


def q_mean_std(schedule: DiscreteSchedule, x0: torch.Tensor, t: torch.Tensor):
    """Mean and standard deviation of q(x_t | x_0)."""
    a, b = vp_coefficients(schedule, t, x0)
    return a * x0, b


def q_sample(schedule: DiscreteSchedule, x0: torch.Tensor, t: torch.Tensor,
             noise: torch.Tensor) -> torch.Tensor:
    """Draw x_t ~ q(x_t | x_0) with the given unit-Gaussian ``noise``."""
    mean, std = q_mean_std(schedule, x0, t)
    return mean + std * noise


def posterior_coefficients(schedule: DiscreteSchedule):
    """Per-step (coef_x0, coef_xt, variance, log_variance_clipped) of q(x_{t-1}|x_t,x_0)."""
    abar = schedule.alphas_cumprod
    abar_prev = torch.cat([abar.new_ones(1), abar[:-1]])
    betas = schedule.betas
    var = betas * (1 - abar_prev) / (1 - abar)
    coef_x0 = betas * abar_prev.sqrt() / (1 - abar)
    coef_xt = (1 - abar_prev) * (1 - betas).sqrt() / (1 - abar)
    # var[0] is 0; clip the log like improved-diffusion with the next step's value
    log_var = torch.log(torch.cat([var[1:2], var[1:]]))
    return coef_x0, coef_xt, var, log_var


def q_posterior(schedule: DiscreteSchedule, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor):
    """Mean, variance and clipped log-variance of q(x_{t-1} | x_t, x_0)."""
    c0, ct, var, log_var = posterior_coefficients(schedule)
    mean = per_example(c0, t, xt) * x0 + per_example(ct, t, xt) * xt
    return mean, per_example(var, t, xt), per_example(log_var, t, xt)


def target(param: str, schedule: DiscreteSchedule, x0: torch.Tensor, noise: torch.Tensor,
           t: torch.Tensor):
    """What a network with parameterization ``param`` is trained to output."""
    if param == "eps":
        return noise
    if param == "x0":
        return x0
    if param == "v":
        a, b = vp_coefficients(schedule, t, x0)
        return a * noise - b * x0
    raise ValueError(f"unknown parameterization {param!r}; expected one of {PARAMETERIZATIONS}")


def vp_coefficients(schedule: DiscreteSchedule, t: torch.Tensor, like: torch.Tensor):
    """``(a, b)`` of ``z_t = a x0 + b eps`` at integer timesteps ``t``: ``a = sqrt(abar_t)``,
    ``b = sqrt(1 - abar_t)``, shaped to broadcast against ``like``. (``sigma`` is reserved for the
    VE noise level ``b / a`` everywhere in the pack; ``gdf`` uses the same ``a``, ``b``.)"""
    abar = schedule.alphas_cumprod
    return per_example(abar.sqrt(), t, like), per_example((1 - abar).sqrt(), t, like)


def predict_x0(param: str, out: torch.Tensor, zt: torch.Tensor, a: torch.Tensor,
               b: torch.Tensor):
    """x0 from a network output, given the VP coefficients of ``z_t = a x0 + b eps``.

    ``a = sqrt(abar)``, ``b = sqrt(1 - abar)``; both broadcast against ``zt``.
    """
    if param == "eps":
        return (zt - b * out) / a
    if param == "x0":
        return out
    if param == "v":
        return a * zt - b * out
    raise ValueError(f"unknown parameterization {param!r}; expected one of {PARAMETERIZATIONS}")


def dynamic_threshold(x0: torch.Tensor, percentile: float, max_value: float) -> torch.Tensor:
    """Imagen's dynamic thresholding of a clean-image estimate, as DeepFloyd IF samples: per
    image, s = the ``percentile`` quantile of |x0| over all its pixels and channels, kept in
    [1, ``max_value``]; x0 is clamped to [-s, s] and divided by s. Pixels pushed past [-1, 1]
    by strong guidance come back without the flat, saturated look of a plain clamp."""
    flat = x0.float().flatten(1)
    s = torch.quantile(flat.abs(), percentile, dim=1).clamp(min=1.0, max=max_value)
    s = s.view(-1, *([1] * (x0.ndim - 1)))
    return (x0.float().clamp(-s, s) / s).to(x0.dtype)
