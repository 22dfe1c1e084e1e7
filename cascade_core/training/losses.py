"""Training losses: the simple loss, the hybrid loss with learned variances, min-SNR weights.

The hybrid loss follows improved DDPM as CDM's base models use it: the network
predicts an interpolation ``v`` between the log of the posterior variance and
log(beta); ``L_vb`` trains only that variance (stop-gradient on the mean) and is
added to the simple loss with weight ``T / 1000``.
"""
from __future__ import annotations

import math

import torch

from ..models.stage import Stage
from ..process.diffusion import (
    per_example,
    predict_x0,
    q_posterior,
    q_sample,
    target,
    vp_coefficients,
)


def normal_kl(mean1, logvar1, mean2, logvar2):
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)), elementwise, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2)
                  + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def _std_normal_cdf(x):
    return 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def discretized_gaussian_nll(x, mean, log_scale):
    """-log p(x) for 8-bit data in [-1, 1] under a Gaussian discretized to bins of width 2/255."""
    centered, inv_std = x - mean, torch.exp(-log_scale)
    cdf_plus = _std_normal_cdf(inv_std * (centered + 1 / 255))
    cdf_min = _std_normal_cdf(inv_std * (centered - 1 / 255))
    log_cdf_plus = cdf_plus.clamp(min=1e-12).log()
    log_one_minus_cdf_min = (1 - cdf_min).clamp(min=1e-12).log()
    log_delta = (cdf_plus - cdf_min).clamp(min=1e-12).log()
    log_probs = torch.where(x < -0.999, log_cdf_plus,
                            torch.where(x > 0.999, log_one_minus_cdf_min, log_delta))
    return -log_probs


def min_snr_weight(param: str, snr: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-gamma weights (Hang et al. 2023) expressed for each parameterization."""
    clipped = snr.clamp(max=gamma)
    if param == "eps":
        return clipped / snr
    if param == "v":
        return clipped / (snr + 1)
    return clipped


def training_loss(stage: Stage, batch: dict, *, min_snr_gamma: float | None = None,
                  model=None) -> dict:
    """Per-example terms of one diffusion training evaluation: ``loss`` (what to minimise),
    ``mse``, ``vb`` (learned-variance stages) and ``x0``, the clean-image estimate (clamped to
    [-1, 1]; the shallow recipe's teacher forcing feeds it to the next stage).

    ``batch`` holds ``x0`` (the target images), ``t`` (integer timesteps), ``noise`` and, where
    the stage takes them, ``cond`` (the low-res image), ``s`` (its augmentation level),
    ``label`` (classes, -1 for none) and ``text`` (a text stage's token embeddings). ``model`` is
    the callable that runs the stage's network, e.g. a DistributedDataParallel wrapper of
    ``stage``; ``stage`` itself by default.
    """
    cfg, sched = stage.config, stage.schedule
    x0, t, noise = batch["x0"], batch["t"], batch["noise"]
    zt = q_sample(sched, x0, t, noise=noise)
    out = (model or stage)(zt, stage.timestep_input(t), cond=batch.get("cond"),
                           aug_level=batch.get("s"), labels=batch.get("label"),
                           text=batch.get("text")).float()
    C = cfg.channels
    pred, tgt = out[:, :C], target(cfg.parameterization, sched, x0, noise=noise, t=t)
    mse = ((pred - tgt) ** 2).mean(dim=(1, 2, 3))
    if min_snr_gamma:
        snr = (sched.alphas_cumprod / (1 - sched.alphas_cumprod)).to(x0.device)[t].float()
        mse = mse * min_snr_weight(cfg.parameterization, snr, float(min_snr_gamma))
    a, b = vp_coefficients(sched, t, x0)
    terms = {"mse": mse, "x0": predict_x0(cfg.parameterization, pred, zt, a=a, b=b).clamp(-1, 1)}
    loss = mse
    if cfg.learn_sigma:
        terms["vb"] = _vb_term(stage, x0, zt, t=t, frozen_pred=pred.detach(), var_out=out[:, C:])
        loss = loss + terms["vb"] * (sched.T / 1000.0)
    terms["loss"] = loss
    return terms


def _vb_term(stage, x0, zt, t, frozen_pred, var_out):
    """L_vb in bits per dimension, training only the variance output."""
    cfg, sched = stage.config, stage.schedule
    a, b = vp_coefficients(sched, t, x0)
    x0_hat = predict_x0(cfg.parameterization, frozen_pred, zt, a=a, b=b)
    model_mean, _, min_log = q_posterior(sched, x0_hat, zt, t=t)
    true_mean, _, true_log = q_posterior(sched, x0, zt, t=t)
    max_log = per_example(sched.betas.log(), t, x0)
    frac = (var_out + 1) / 2
    model_log = frac * max_log + (1 - frac) * min_log
    kl = normal_kl(true_mean, true_log, model_mean, logvar2=model_log)
    kl = kl.mean(dim=(1, 2, 3)) / math.log(2.0)
    nll = discretized_gaussian_nll(x0, model_mean, 0.5 * model_log)
    nll = nll.mean(dim=(1, 2, 3)) / math.log(2.0)
    return torch.where(t == 0, nll, kl)


def dae_loss(stage: Stage, x0, sigma, noise, labels=None) -> dict:
    """Per-example ``loss`` (MSE) of a denoising-autoencoder stage at VE noise levels ``sigma``
    (B,), and its clean-image estimate ``x0`` (clamped), from one evaluation."""
    noisy = x0 + sigma.view(-1, 1, 1, 1).to(x0.dtype) * noise
    out = stage.net(noisy, sigma, labels).float()
    return {"loss": ((out - x0) ** 2).mean(dim=(1, 2, 3)), "x0": out.clamp(-1, 1)}
