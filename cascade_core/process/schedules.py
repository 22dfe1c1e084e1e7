"""Discrete noise schedules, respacing, and the sigma grids samplers walk.

A schedule is kept as float64 cumulative alphas ``abar_t`` for t = 0..T-1. The
samplers see it through ``sigma_t = sqrt((1 - abar_t) / abar_t)``, the noise
level of the variance-exploding view ``x = z_t / sqrt(abar_t) = x0 + sigma*eps``,
so one sampler serves every schedule, respacing and parameterization.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from ..base.errors import CascadeError
from ..base.fields import check_int

SPACINGS = ("uniform", "trailing", "ddim", "karras")
BETA_SCHEDULES = ("linear", "cosine")
MAX_TIMESTEPS = 100_000  # released schedules use 1,000 or 4,000
# Karras grids start here rather than at a cosine schedule's sigma_max (~2e4 at T=1000):
# at sigma 80 the signal is 1.2% of z_T, and the steps go where the image forms.
KARRAS_SIGMA_MAX = 80.0


@dataclass(frozen=True)
class ScheduleConfig:
    """A beta schedule by name and length, as stored in stage checkpoints."""

    beta_schedule: str = "cosine"  # "linear" or "cosine"
    timesteps: int = 1000

    def __post_init__(self):
        object.__setattr__(self, "timesteps", check_int("timesteps", self.timesteps,
                                                        (2, MAX_TIMESTEPS)))
        if self.beta_schedule not in BETA_SCHEDULES:
            raise CascadeError("unknown beta schedule", "'linear' or 'cosine'",
                               repr(self.beta_schedule))
        if int(self.timesteps) < 2:
            raise CascadeError("schedule needs at least 2 timesteps", ">= 2", self.timesteps)

    def to_dict(self) -> dict:
        """The config as plain JSON values."""
        return asdict(self)


def cosine_alpha_bar(u: torch.Tensor, offset: float = 0.008) -> torch.Tensor:
    """Nichol & Dhariwal's continuous abar(u) for u in [0, 1], with abar(0) = 1."""
    f = torch.cos((u + offset) / (1 + offset) * math.pi / 2) ** 2
    return f / math.cos(offset / (1 + offset) * math.pi / 2) ** 2


def make_betas(beta_schedule: str, timesteps: int) -> torch.Tensor:
    """Betas of a ``beta_schedule`` ("linear" or "cosine") with ``timesteps`` steps (float64, on
    the CPU even inside ``torch.device("meta")``, where the loaders build a stage before its
    weights arrive: a schedule is host-side numbers, never weights)."""
    T = int(timesteps)
    if beta_schedule == "linear":
        scale = 1000.0 / T  # keeps the same total noise for any length (improved DDPM)
        return torch.linspace(scale * 1e-4, scale * 0.02, T, dtype=torch.float64,
                              device="cpu").clamp(max=0.999)
    if beta_schedule == "cosine":
        u = torch.arange(T + 1, dtype=torch.float64, device="cpu") / T
        abar = cosine_alpha_bar(u)
        return (1 - abar[1:] / abar[:-1]).clamp(max=0.999)
    raise CascadeError("unknown beta schedule", "'linear' or 'cosine'", repr(beta_schedule))


class DiscreteSchedule:
    """T discrete noise levels; ``timestep_map`` holds original indices after respacing."""

    def __init__(self, betas: torch.Tensor, timestep_map: torch.Tensor | None = None):
        self.betas = betas.to(torch.float64)
        self.alphas_cumprod = torch.cumprod(1 - self.betas, 0)
        self.T = len(self.betas)
        kept = torch.arange(self.T, device="cpu") if timestep_map is None else timestep_map
        self.timestep_map = kept.to(torch.float64)
        self.sigmas = ((1 - self.alphas_cumprod) / self.alphas_cumprod).sqrt()
        self.log_sigmas = self.sigmas.log()

    @classmethod
    def from_config(cls, cfg: ScheduleConfig) -> DiscreteSchedule:
        """The schedule a ScheduleConfig names."""
        return cls(make_betas(cfg.beta_schedule, cfg.timesteps))

    @property
    def sigma_min(self) -> float:
        """The smallest VE noise level, at the first step."""
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        """The largest VE noise level, at the last step."""
        return float(self.sigmas[-1])

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        """Fractional timestep (in original indices) of ``sigma``, interpolating log-sigma."""
        ls = sigma.to(torch.float64).clamp(min=1e-12).log().cpu()
        idx = torch.searchsorted(self.log_sigmas, ls).clamp(1, self.T - 1)
        lo, hi = self.log_sigmas[idx - 1], self.log_sigmas[idx]
        w = ((ls - lo) / (hi - lo)).clamp(0, 1)
        t = (1 - w) * self.timestep_map[idx - 1] + w * self.timestep_map[idx]
        return t.to(device=sigma.device, dtype=torch.float32)

    def t_to_sigma(self, t: torch.Tensor) -> torch.Tensor:
        """Sigma at (fractional) index ``t`` of this schedule, log-linear between steps."""
        t = t.to(torch.float64).cpu().clamp(0, self.T - 1)
        lo = t.floor().long().clamp(max=self.T - 2)
        w = t - lo
        return ((1 - w) * self.log_sigmas[lo] + w * self.log_sigmas[lo + 1]).exp()


def space_timesteps(T: int, spec: str | int) -> list[int]:
    """Indices of ``T`` kept by an improved-diffusion style respacing ``spec``.

    ``"100"`` keeps 100 evenly spaced steps including the first and last,
    ``"ddim50"`` keeps every T//50-th step starting at 0, and ``"10,15,20"``
    splits the T steps into three equal sections with that many steps each.
    """
    spec = str(spec).strip()
    if spec.startswith("ddim"):
        n = _positive_int(spec[4:], spec, T)
        stride = max(T // n, 1)
        return list(range(0, T, stride))[:n]
    counts = [_positive_int(c, spec, T) for c in spec.split(",")]
    size, extra = divmod(T, len(counts))
    kept, start = [], 0
    for i, n in enumerate(counts):
        length = size + (1 if i < extra else 0)
        if n > length:
            raise CascadeError(f"respacing section {i} asks for too many steps", f"<= {length}", n)
        frac = (length - 1) / (n - 1) if n > 1 else 0.0
        kept += [start + round(frac * j) for j in range(n)]
        start += length
    return sorted(set(kept))


def _positive_int(text: str, spec: str, T: int) -> int:
    try:
        n = int(text)
    except ValueError:
        raise CascadeError("bad respacing spec", "'N', 'ddimN' or 'N1,N2,...'",
                           repr(spec)) from None
    if not 1 <= n <= T:
        raise CascadeError("respacing step count out of range", f"1..{T}", n)
    return n


def respace(schedule: DiscreteSchedule, kept: list[int]) -> DiscreteSchedule:
    """A schedule over the ``kept`` indices whose cumulative alphas equal the original's there."""
    abar = schedule.alphas_cumprod[kept]
    prev = torch.cat([abar.new_ones(1), abar[:-1]])
    return DiscreteSchedule(1 - abar / prev, schedule.timestep_map[kept])


def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """Karras et al.'s ``n`` descending sigmas, evenly spaced in ``sigma ** (1 / rho)``."""
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (hi + ramp * (lo - hi)) ** rho


def sampling_sigmas(schedule: DiscreteSchedule, steps: int | str,
                    spacing: str = "uniform") -> torch.Tensor:
    """Descending sigmas for a sampler, ending with 0; ``steps`` model-step intervals.

    ``steps`` may also be a respacing spec string (``"ddim25"``, ``"10,15,20"``),
    which overrides ``spacing``.
    """
    T = schedule.T
    if isinstance(steps, str) and not steps.strip().isdigit():
        idx = torch.tensor(space_timesteps(T, steps))
    else:
        n = int(steps)
        if n < 1 or (n > T and spacing != "karras"):  # only karras grids are not limited to T
            raise CascadeError(f"step count out of range for {spacing!r} spacing", f"1..{T}", n)
        if spacing == "uniform":
            idx = torch.tensor(space_timesteps(T, str(n)))
        elif spacing == "ddim":
            idx = torch.tensor(space_timesteps(T, f"ddim{n}"))
        elif spacing == "trailing":
            idx = (torch.arange(T, 0, -T / n).round().long() - 1).clamp(0, T - 1).unique()
        elif spacing == "karras":
            sig = karras_sigmas(n, schedule.sigma_min, min(schedule.sigma_max, KARRAS_SIGMA_MAX))
            return torch.cat([sig, sig.new_zeros(1)])
        else:
            raise CascadeError("unknown step spacing", f"one of {SPACINGS}", repr(spacing))
    sig = schedule.sigmas[idx].flip(0)
    return torch.cat([sig, sig.new_zeros(1)])


def truncate_sigmas(sigmas: torch.Tensor, sigma_stop: float) -> torch.Tensor:
    """Cut a descending grid so that it ends exactly at ``sigma_stop`` instead of 0.

    This is how the truncated conditioning augmentation path stops the base
    sampler at the augmentation level ``s`` whatever step count it runs with.
    """
    if sigma_stop <= 0:
        return sigmas
    keep = sigmas[sigmas > sigma_stop * (1 + 1e-6)]
    return torch.cat([keep, keep.new_tensor([sigma_stop])])
