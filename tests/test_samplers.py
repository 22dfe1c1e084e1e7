import math

import pytest
import torch
from helpers import GaussianDenoiser

import cascade_core as cc
from cascade_core.process.noise import as_noise_source
from cascade_core.process.schedules import karras_sigmas

MU, S = 0.3, 0.5
SCHED = cc.DiscreteSchedule.from_config(cc.ScheduleConfig("cosine", 1000))


def run(name, steps, n=4000, seed=0, **opts):
    model = GaussianDenoiser(MU, S)
    sig = karras_sigmas(steps, 0.006, 80.0)
    sigmas = torch.cat([sig, sig.new_zeros(1)])
    g = torch.Generator().manual_seed(seed)
    x = MU + torch.randn((n, 1, 2, 2),
                         generator=g) * math.sqrt(S ** 2 + 80.0 ** 2)  # the exact marginal
    return cc.get_sampler(name)(model, x, sigmas, noise=as_noise_source(g, n), **opts)


DOCUMENTED = {"ddpm", "ddim", "euler", "heun", "dpmpp_2m"}
# option variants beyond each sampler's defaults
VARIANTS = [("ddpm", {"variance": "large"}), ("ddim", {"eta": 1.0})]


def test_the_documented_samplers_are_registered_with_their_costs():
    assert DOCUMENTED <= set(cc.SAMPLERS)
    for name, fn in cc.SAMPLERS.items():
        assert fn.order in (None, 1, 2), name
        assert fn.evaluations(10) >= 10, name
    assert cc.SAMPLERS["heun"].evaluations(10) == 19  # no second evaluation on the step to 0
    assert cc.SAMPLERS["dpmpp_2m"].evaluations(10) == 10


@pytest.mark.parametrize("name,opts", [(n, {}) for n in sorted(cc.SAMPLERS)] + VARIANTS)
def test_sampler_reproduces_gaussian_data(name, opts):
    stochastic = cc.SAMPLERS[name].order is None or opts.get("eta")
    out = run(name, 400 if stochastic else 60, **opts)  # ancestral steps converge at first order
    assert float(out.mean()) == pytest.approx(MU, abs=0.02)
    assert float(out.std()) == pytest.approx(S, rel=0.05)


def _ode_error(name, steps):
    model = GaussianDenoiser(MU, S)
    sigmas = karras_sigmas(steps + 1, 0.05, 20.0)  # stop above 0: the exact ODE end point is known
    x = torch.linspace(-3, 3, 64, dtype=torch.float64).view(64, 1, 1, 1) * 20.0
    out = cc.get_sampler(name)(model, x.clone(), sigmas)
    ref = model.ode_solution(x, 20.0, 0.05)
    return float((out - ref).abs().max())


@pytest.mark.parametrize("name,order", [(n, fn.order) for n, fn in sorted(cc.SAMPLERS.items())
                                        if fn.order is not None])
def test_convergence_order(name, order):
    errs = [_ode_error(name, n) for n in (20, 40, 80)]
    rates = [math.log2(errs[i] / errs[i + 1]) for i in range(2)]
    assert all(abs(r - order) < 0.35 for r in rates), (errs, rates)


def test_ddim_eta0_is_deterministic_and_invertible():
    model = GaussianDenoiser(MU, S)
    sigmas = karras_sigmas(200, 0.01, 20.0)
    x = torch.randn(256, 1, 2, 2, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(1)) * 20.0
    a = cc.get_sampler("ddim")(model, x.clone(), sigmas)
    b = cc.get_sampler("ddim")(model, x.clone(), sigmas)
    assert torch.equal(a, b)
    back = cc.get_sampler("ddim")(model, a, sigmas.flip(0))  # the same ODE walked upwards
    assert float((back - x).abs().max() / x.abs().max()) < 2e-2


def test_callback_sees_every_step_and_can_interrupt():
    model = GaussianDenoiser(MU, S)
    sigmas = cc.sampling_sigmas(SCHED, 10, "karras")
    seen = []
    cc.get_sampler("heun")(model, torch.randn(2, 1, 2, 2), sigmas,
                           callback=lambda d: seen.append(d["i"]))
    assert seen == list(range(10))

    def stop(info):
        if info["i"] == 3:
            raise cc.SamplingInterrupted()

    calls = []
    with pytest.raises(cc.SamplingInterrupted):
        cc.get_sampler("dpmpp_2m")(model, torch.randn(2, 1, 2, 2), sigmas,
                                   callback=lambda d: (calls.append(d["i"]), stop(d)))
    assert calls == [0, 1, 2, 3]


def test_ancestral_sampler_same_seed_same_samples():
    assert torch.equal(run("ddpm", 20, n=8, seed=4), run("ddpm", 20, n=8, seed=4))
    assert not torch.equal(run("ddpm", 20, n=8, seed=4), run("ddpm", 20, n=8, seed=5))


def test_unknown_sampler_raises():
    with pytest.raises(cc.CascadeError, match="unknown sampler"):
        cc.get_sampler("plms")
