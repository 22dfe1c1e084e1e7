"""Samplers: small free functions with one signature, in the spirit of k-diffusion.

``sampler(model, x, sigmas, noise=None, callback=None, **options) -> x``

* ``model(x, sigma)`` returns the denoised estimate (a ``Denoiser``);
  ``model.predict`` also gives the learned-variance fraction when there is one;
* ``x`` is the start in the VE view (``x = z_T * sqrt(1 + sigma_0^2)``);
* ``sigmas`` is a descending grid; the last entry is 0 for a full run, or the
  truncation level for Algorithm 2's truncated path;
* ``noise`` is a ``NoiseSource`` (per-image CPU streams) for stochastic samplers;
* ``callback(info)`` is called after every model evaluation with ``i``,
  ``total``, ``x``, ``sigma``, ``denoised``; raising from it (e.g.
  ``SamplingInterrupted``) stops the run.
"""
from __future__ import annotations

import math

import torch

from ..base.errors import CascadeError

SAMPLERS: dict = {}


def register(name: str, order: int | None, evaluations=lambda steps: steps):
    """Add a sampler to ``SAMPLERS`` under ``name``.

    ``order`` is the convergence order of its deterministic form as a solver of the
    probability-flow ODE (None for an ancestral sampler, which only converges in distribution);
    ``evaluations(steps)`` is its model-evaluation count over ``steps`` intervals ending at 0: its
    cost, which budgets and progress bars use. The tests derive their cases from these.
    """

    def add(fn):
        fn.order, fn.evaluations = order, evaluations
        SAMPLERS[name] = fn
        return fn

    return add


def _report(callback, *, i, total, x, sigma, denoised):
    if callback is not None:
        callback({"i": i, "total": total, "x": x, "sigma": float(sigma), "denoised": denoised})


def _vp(sigma: float) -> tuple[float, float]:
    """(abar, 1 - abar) of VE level sigma, computed without cancellation."""
    return 1 / (1 + sigma * sigma), sigma * sigma / (1 + sigma * sigma)


@register("ddpm", order=None)
@torch.no_grad()
def sample_ddpm(model, x, sigmas, noise=None, callback=None, variance: str = "auto"):
    """Ancestral sampling from the posterior q(x_{t-1} | x_t, x0_hat) between grid points.

    ``variance``: "small" (posterior variance), "large" (beta), "learned" (the
    model's interpolated log-variance) or "auto" (learned if the model has it).
    Under classifier guidance the mean moves by variance x gradient (ADM's
    ``condition_mean``), except at the last step to 0, which returns the estimate.
    """
    sig = [float(v) for v in sigmas]
    n = len(sig) - 1
    for i in range(n):
        sigma, sigma_next = sig[i], sig[i + 1]
        pred = model.predict(x, sigma)
        _report(callback, i=i, total=n, x=x, sigma=sigma, denoised=pred.x0)
        if sigma_next == 0:
            x = pred.x0
            continue
        abar_t, one_m_t = _vp(sigma)
        abar_next, one_m_next = _vp(sigma_next)
        beta = 1 - abar_t / abar_next
        z_t = x * math.sqrt(abar_t)
        mean = ((math.sqrt(abar_next) * beta / one_m_t) * pred.x0
                + (math.sqrt(1 - beta) * one_m_next / one_m_t) * z_t)
        small, large = beta * one_m_next / one_m_t, beta
        mode = variance
        if variance == "auto":
            mode = "learned" if pred.var_frac is not None else "small"
        if mode == "small":
            std = torch.tensor(math.sqrt(small))
        elif mode == "large":
            std = torch.tensor(math.sqrt(large))
        elif mode == "learned":
            if pred.var_frac is None:
                raise CascadeError("learned variance requested from a stage that does not learn it")
            frac = pred.var_frac  # not clamped: ADM extrapolates outside [0, 1] too
            std = torch.exp(0.5 * (frac * math.log(large) + (1 - frac) * math.log(small)))
        else:
            raise CascadeError("unknown DDPM variance", "auto, small, large or learned",
                               repr(variance))
        if pred.log_p_grad is not None:  # classifier guidance: ADM's condition_mean
            mean = mean + std.to(x.device) ** 2 * pred.log_p_grad
        z_next = mean + std.to(x.device) * noise.randn_like(x)
        x = z_next / math.sqrt(abar_next)
    return x


@register("ddim", order=1)
@torch.no_grad()
def sample_ddim(model, x, sigmas, noise=None, callback=None, eta: float = 0.0):
    """DDIM (Song et al.); eta 0 is deterministic, eta 1 matches DDPM's small variance."""
    sig = [float(v) for v in sigmas]
    n = len(sig) - 1
    for i in range(n):
        sigma, sigma_next = sig[i], sig[i + 1]
        x0 = model(x, sigma)
        _report(callback, i=i, total=n, x=x, sigma=sigma, denoised=x0)
        if sigma_next == 0:
            x = x0
            continue
        eps = (x - x0) / sigma
        abar_t, one_m_t = _vp(sigma)
        abar_next, one_m_next = _vp(sigma_next)
        c = eta * math.sqrt(max(one_m_next / one_m_t * (1 - abar_t / abar_next),
                                0.0)) if eta else 0.0
        z = math.sqrt(abar_next) * x0 + math.sqrt(max(one_m_next - c * c, 0.0)) * eps
        if c > 0:
            z = z + c * noise.randn_like(x)
        x = z / math.sqrt(abar_next)
    return x


@register("euler", order=1)
@torch.no_grad()
def sample_euler(model, x, sigmas, noise=None, callback=None):
    """First-order solver of the probability-flow ODE dx/dsigma = (x - D(x)) / sigma."""
    sig = [float(v) for v in sigmas]
    n = len(sig) - 1
    for i in range(n):
        sigma, sigma_next = sig[i], sig[i + 1]
        x0 = model(x, sigma)
        _report(callback, i=i, total=n, x=x, sigma=sigma, denoised=x0)
        x = x + (x - x0) / sigma * (sigma_next - sigma)
    return x


@register("heun", order=2, evaluations=lambda steps: 2 * steps - 1)  # no second evaluation at 0
@torch.no_grad()
def sample_heun(model, x, sigmas, noise=None, callback=None):
    """Second-order Heun (Karras et al. 2022, Algorithm 1); Euler on the final step to 0."""
    sig = [float(v) for v in sigmas]
    n = len(sig) - 1
    for i in range(n):
        sigma, sigma_next = sig[i], sig[i + 1]
        x0 = model(x, sigma)
        _report(callback, i=i, total=n, x=x, sigma=sigma, denoised=x0)
        d = (x - x0) / sigma
        x_euler = x + d * (sigma_next - sigma)
        if sigma_next == 0:
            x = x_euler
            continue
        d_next = (x_euler - model(x_euler, sigma_next)) / sigma_next
        x = x + (d + d_next) / 2 * (sigma_next - sigma)
    return x


@register("dpmpp_2m", order=2)
@torch.no_grad()
def sample_dpmpp_2m(model, x, sigmas, noise=None, callback=None):
    """DPM-Solver++(2M) (Lu et al. 2022): multistep, second order, data prediction."""
    sig = [float(v) for v in sigmas]
    n = len(sig) - 1
    prev_x0, prev_h = None, None
    for i in range(n):
        sigma, sigma_next = sig[i], sig[i + 1]
        x0 = model(x, sigma)
        _report(callback, i=i, total=n, x=x, sigma=sigma, denoised=x0)
        if sigma_next == 0:
            x = x0
            continue
        h = math.log(sigma) - math.log(sigma_next)  # step in lambda = -log sigma
        d = x0
        if prev_x0 is not None:
            r = prev_h / h
            d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * prev_x0
        x = (sigma_next / sigma) * x - math.expm1(-h) * d
        prev_x0, prev_h = x0, h
    return x


def get_sampler(name: str):
    """The sampler function registered as ``name``; a CascadeError lists the known ones."""
    try:
        return SAMPLERS[name]
    except KeyError:
        raise CascadeError("unknown sampler", f"one of {sorted(SAMPLERS)}", repr(name)) from None


def evaluations(name: str, steps: int) -> int:
    """Model evaluations a sampler makes over ``steps`` intervals ending at 0."""
    return get_sampler(name).evaluations(int(steps))
