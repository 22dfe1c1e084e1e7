import pytest
import torch

import cascade_core as cc
from cascade_core.process.schedules import make_betas, truncate_sigmas


@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize("T", [10, 1000, 4000])
def test_betas_are_valid_for_any_length(kind, T):
    b = make_betas(kind, T)
    assert b.shape == (T,) and b.dtype == torch.float64
    assert bool((b > 0).all()) and bool((b <= 0.999).all())
    abar = torch.cumprod(1 - b, 0)
    assert bool((abar[1:] < abar[:-1]).all())  # strictly more noise at every step
    assert float(abar[-1]) < 1e-2  # the chain ends near pure noise


def test_linear_schedule_matches_ddpm_at_1000():
    b = make_betas("linear", 1000)
    assert float(b[0]) == pytest.approx(1e-4) and float(b[-1]) == pytest.approx(0.02)


def test_space_timesteps_specs():
    assert cc.space_timesteps(1000, "ddim50") == list(range(0, 1000, 20))
    kept = cc.space_timesteps(1000, "100")
    assert len(kept) == 100 and kept[0] == 0 and kept[-1] == 999
    kept = cc.space_timesteps(300, "10,15,20")
    assert len(kept) == 45
    assert sum(k < 100 for k in kept) == 10 and sum(100 <= k < 200 for k in kept) == 15


@pytest.mark.parametrize("spec", ["", "ddimx", "0", "5000", "200,1"])
def test_bad_respacing_spec_raises(spec):
    with pytest.raises(cc.CascadeError):
        cc.space_timesteps(300, spec)


@pytest.mark.parametrize("spec", ["25", "ddim20", "10,15,20", "3,1"])
def test_respacing_keeps_cumulative_alphas(spec):
    sched = cc.DiscreteSchedule.from_config(cc.ScheduleConfig("cosine", 300))
    kept = cc.space_timesteps(300, spec)
    new = cc.respace(sched, kept)
    assert torch.allclose(new.alphas_cumprod, sched.alphas_cumprod[kept], rtol=1e-10, atol=0)
    assert new.timestep_map.tolist() == kept


@pytest.mark.parametrize("spacing", ["uniform", "trailing", "ddim", "karras"])
@pytest.mark.parametrize("steps", [1, 7, 50])
def test_sampling_sigmas_shape(spacing, steps):
    sched = cc.DiscreteSchedule.from_config(cc.ScheduleConfig("linear", 1000))
    s = cc.sampling_sigmas(sched, steps, spacing)
    assert s.shape == (steps + 1,) and float(s[-1]) == 0
    assert bool((s[:-1] > 0).all()) and bool((s[1:] < s[:-1]).all())
    assert float(s[0]) <= sched.sigma_max * (1 + 1e-9)


def test_trailing_starts_at_last_step_and_uniform_at_both_ends():
    sched = cc.DiscreteSchedule.from_config(cc.ScheduleConfig("linear", 1000))
    assert float(cc.sampling_sigmas(sched, 10, "trailing")[0]) == pytest.approx(sched.sigma_max)
    u = cc.sampling_sigmas(sched, 10, "uniform")
    assert float(u[0]) == pytest.approx(sched.sigma_max)
    assert float(u[-2]) == pytest.approx(sched.sigma_min)


def test_spec_string_overrides_spacing():
    sched = cc.DiscreteSchedule.from_config(cc.ScheduleConfig("linear", 300))
    s = cc.sampling_sigmas(sched, "10,15,20")
    assert s.shape == (46,)


def test_unknown_spacing_and_step_count_raise():
    sched = cc.DiscreteSchedule.from_config(cc.ScheduleConfig("linear", 100))
    with pytest.raises(cc.CascadeError, match="spacing"):
        cc.sampling_sigmas(sched, 10, "exponentialish")
    with pytest.raises(cc.CascadeError, match="step count"):
        cc.sampling_sigmas(sched, 101)


def test_sigma_to_t_inverts_t_to_sigma():
    sched = cc.DiscreteSchedule.from_config(cc.ScheduleConfig("cosine", 1000))
    t = torch.tensor([0.0, 1.5, 10.25, 500.0, 998.75])
    back = sched.sigma_to_t(sched.t_to_sigma(t))
    assert torch.allclose(back.double(), t.double(), atol=1e-3)


@pytest.mark.parametrize("steps", [3, 10, 50, 1000])
@pytest.mark.parametrize("spacing", ["uniform", "karras", "trailing"])
def test_truncation_stops_exactly_at_level(steps, spacing):
    sched = cc.DiscreteSchedule.from_config(cc.ScheduleConfig("cosine", 1000))
    stop = cc.aug_sigma(0.25)
    s = truncate_sigmas(cc.sampling_sigmas(sched, steps, spacing), stop)
    assert float(s[-1]) == stop
    assert bool((s[:-1] > stop).all()) and bool((s[1:] < s[:-1]).all())
