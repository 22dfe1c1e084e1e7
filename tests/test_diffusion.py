import math

import pytest
import torch

import cascade_core as cc
from cascade_core.process.diffusion import predict_x0, q_mean_std, q_posterior, q_sample, target

SCHED = cc.DiscreteSchedule.from_config(cc.ScheduleConfig("cosine", 200))


def test_forward_marginal_matches_closed_form():
    g = torch.Generator().manual_seed(0)
    x0 = torch.full((20000, 1, 1, 1), 0.7)
    for t_i in (0, 50, 150, 199):
        t = torch.full((20000,), t_i)
        xt = q_sample(SCHED, x0, t, noise=torch.randn(x0.shape, generator=g))
        abar = float(SCHED.alphas_cumprod[t_i])
        assert float(xt.mean()) == pytest.approx(math.sqrt(abar) * 0.7, abs=0.02)
        assert float(xt.var()) == pytest.approx(1 - abar, rel=0.05, abs=1e-6)


def test_q_mean_std_coefficients():
    x0 = torch.randn(3, 2, 4, 4)
    t = torch.tensor([0, 10, 199])
    mean, std = q_mean_std(SCHED, x0, t)
    for i, ti in enumerate(t.tolist()):
        abar = SCHED.alphas_cumprod[ti]
        assert torch.allclose(mean[i], x0[i] * abar.sqrt().float())
        assert float(std[i].flatten()[0]) == pytest.approx(float((1 - abar).sqrt()), rel=1e-6)


def test_posterior_matches_bayes_rule():
    """q(x_{t-1}|x_t,x_0) ∝ q(x_t|x_{t-1}) q(x_{t-1}|x_0): a product of two Gaussians."""
    x0 = torch.randn(4, 3, 2, 2, dtype=torch.float64)
    xt = torch.randn(4, 3, 2, 2, dtype=torch.float64)
    t = torch.tensor([1, 20, 100, 199])
    mean, var, _ = q_posterior(SCHED, x0, xt, t=t)
    for i, ti in enumerate(t.tolist()):
        beta, abar_prev = SCHED.betas[ti], SCHED.alphas_cumprod[ti - 1]
        precision = (1 - beta) / beta + 1 / (1 - abar_prev)
        want_var = 1 / precision
        want_mean = want_var * ((1 - beta).sqrt() * xt[i] / beta
                                + abar_prev.sqrt() * x0[i] / (1 - abar_prev))
        assert torch.allclose(var[i].flatten()[0], want_var, rtol=1e-10)
        assert torch.allclose(mean[i], want_mean, rtol=1e-9, atol=1e-12)


def test_posterior_at_t0_returns_x0():
    x0 = torch.randn(2, 3, 2, 2, dtype=torch.float64)
    xt = torch.randn(2, 3, 2, 2, dtype=torch.float64)
    mean, var, log_var = q_posterior(SCHED, x0, xt, t=torch.tensor([0, 0]))
    assert torch.allclose(mean, x0) and float(var.abs().max()) == 0
    assert bool(torch.isfinite(log_var).all())


@pytest.mark.parametrize("param", ["eps", "x0", "v"])
def test_targets_recover_x0(param):
    x0, noise = torch.randn(5, 3, 4, 4), torch.randn(5, 3, 4, 4)
    t = torch.tensor([0, 3, 60, 120, 199])
    xt = q_sample(SCHED, x0, t, noise=noise)
    abar = SCHED.alphas_cumprod[t].float().view(-1, 1, 1, 1)
    got = predict_x0(param, target(param, SCHED, x0, noise=noise, t=t), xt, a=abar.sqrt(),
                     b=(1 - abar).sqrt())
    assert torch.allclose(got, x0, atol=2e-3 if param == "eps" else 1e-5)


def test_unknown_parameterization_raises():
    with pytest.raises(ValueError, match="parameterization"):
        target("score", SCHED, torch.zeros(1, 1, 1, 1), noise=torch.zeros(1, 1, 1, 1),
               t=torch.tensor([0]))
