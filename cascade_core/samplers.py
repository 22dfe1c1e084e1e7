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

from .errors import CascadeError


def _report(callback, i, total, x, sigma, denoised):
    if callback is not None:
        callback({"i": i, "total": total, "x": x, "sigma": float(sigma), "denoised": denoised})


def _vp(sigma: float) -> tuple[float, float]:
    """(abar, 1 - abar) of VE level sigma, computed without cancellation."""
    return 1 / (1 + sigma * sigma), sigma * sigma / (1 + sigma * sigma)


@torch.no_grad()
def sample_ddpm(model, x, sigmas, noise=None, callback=None, variance: str = "auto"):
    """Ancestral sampling from the posterior q(x_{t-1} | x_t, x0_hat) between grid points.

    ``variance``: "small" (posterior variance), "large" (beta), "learned" (the
    model's interpolated log-variance) or "auto" (learned if the model has it).
    """
    sig = [float(s) for s in sigmas]
    n = len(sig) - 1
    for i in range(n):
        s, s_next = sig[i], sig[i + 1]
        pred = model.predict(x, s)
        _report(callback, i, n, x, s, pred.x0)
        if s_next == 0:
            x = pred.x0
            continue
        abar_t, one_m_t = _vp(s)
        abar_s, one_m_s = _vp(s_next)
        beta = 1 - abar_t / abar_s
        z_t = x * math.sqrt(abar_t)
        mean = (math.sqrt(abar_s) * beta / one_m_t) * pred.x0 + (math.sqrt(1 - beta) * one_m_s / one_m_t) * z_t
        small, large = beta * one_m_s / one_m_t, beta
        mode = ("learned" if pred.var_frac is not None else "small") if variance == "auto" else variance
        if mode == "small":
            std = torch.tensor(math.sqrt(small))
        elif mode == "large":
            std = torch.tensor(math.sqrt(large))
        elif mode == "learned":
            if pred.var_frac is None:
                raise CascadeError("learned variance requested from a stage that does not learn it")
            frac = pred.var_frac.clamp(0, 1)
            std = torch.exp(0.5 * (frac * math.log(large) + (1 - frac) * math.log(small)))
        else:
            raise CascadeError("unknown DDPM variance", "auto, small, large or learned", repr(variance))
        z_s = mean + std.to(x.device) * noise.randn_like(x)
        x = z_s / math.sqrt(abar_s)
    return x


@torch.no_grad()
def sample_ddim(model, x, sigmas, noise=None, callback=None, eta: float = 0.0):
    """DDIM (Song et al.); eta 0 is deterministic, eta 1 matches DDPM's small variance."""
    sig = [float(s) for s in sigmas]
    n = len(sig) - 1
    for i in range(n):
        s, s_next = sig[i], sig[i + 1]
        x0 = model(x, s)
        _report(callback, i, n, x, s, x0)
        if s_next == 0:
            x = x0
            continue
        eps = (x - x0) / s
        abar_t, one_m_t = _vp(s)
        abar_s, one_m_s = _vp(s_next)
        c = eta * math.sqrt(max(one_m_s / one_m_t * (1 - abar_t / abar_s), 0.0)) if eta else 0.0
        z = math.sqrt(abar_s) * x0 + math.sqrt(max(one_m_s - c * c, 0.0)) * eps
        if c > 0:
            z = z + c * noise.randn_like(x)
        x = z / math.sqrt(abar_s)
    return x


@torch.no_grad()
def sample_euler(model, x, sigmas, noise=None, callback=None):
    """First-order solver of the probability-flow ODE dx/dsigma = (x - D(x)) / sigma."""
    sig = [float(s) for s in sigmas]
    n = len(sig) - 1
    for i in range(n):
        s, s_next = sig[i], sig[i + 1]
        x0 = model(x, s)
        _report(callback, i, n, x, s, x0)
        x = x + (x - x0) / s * (s_next - s)
    return x


@torch.no_grad()
def sample_heun(model, x, sigmas, noise=None, callback=None):
    """Second-order Heun (Karras et al. 2022, Algorithm 1); Euler on the final step to 0."""
    sig = [float(s) for s in sigmas]
    n = len(sig) - 1
    for i in range(n):
        s, s_next = sig[i], sig[i + 1]
        x0 = model(x, s)
        _report(callback, i, n, x, s, x0)
        d = (x - x0) / s
        x_euler = x + d * (s_next - s)
        if s_next == 0:
            x = x_euler
            continue
        d_next = (x_euler - model(x_euler, s_next)) / s_next
        x = x + (d + d_next) / 2 * (s_next - s)
    return x


@torch.no_grad()
def sample_dpmpp_2m(model, x, sigmas, noise=None, callback=None):
    """DPM-Solver++(2M) (Lu et al. 2022): multistep, second order, data prediction."""
    sig = [float(s) for s in sigmas]
    n = len(sig) - 1
    prev_x0, prev_h = None, None
    for i in range(n):
        s, s_next = sig[i], sig[i + 1]
        x0 = model(x, s)
        _report(callback, i, n, x, s, x0)
        if s_next == 0:
            x = x0
            continue
        h = math.log(s) - math.log(s_next)  # step in lambda = -log sigma
        d = x0
        if prev_x0 is not None:
            r = prev_h / h
            d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * prev_x0
        x = (s_next / s) * x - math.expm1(-h) * d
        prev_x0, prev_h = x0, h
    return x


SAMPLERS = {
    "ddpm": sample_ddpm,
    "ddim": sample_ddim,
    "euler": sample_euler,
    "heun": sample_heun,
    "dpmpp_2m": sample_dpmpp_2m,
}
STOCHASTIC = {"ddpm", "ddim"}


def get_sampler(name: str):
    try:
        return SAMPLERS[name]
    except KeyError:
        raise CascadeError("unknown sampler", f"one of {sorted(SAMPLERS)}", repr(name)) from None


def evaluations(name: str, steps: int) -> int:
    """Model evaluations a sampler makes over ``steps`` intervals ending at 0."""
    return 2 * steps - 1 if name == "heun" else steps
