"""Progressive distillation (Salimans & Ho 2022): a student learns to take two of its teacher's
deterministic DDIM steps in one, so each round halves the steps a stage samples with.

The student samples with DDIM on the grid ``student_sigmas`` gives (``trailing`` spacing: it
starts at the schedule's top, and the grid of n steps lies inside the grid of 2n, up to rounding
to whole timesteps, so a round's student is evaluated where its teacher was trained); the
teacher takes the two DDIM steps from a grid point through the midpoint in time to the next.

In the VE view a DDIM step is ``x' = x0 + (sigma' / sigma) (x - x0)``, so the clean image whose
single step lands where the teacher's two land is ``x~ = (x'' - r x) / (1 - r)`` with
``r = sigma'' / sigma``. The student is trained towards ``x~`` through its own
parameterization: for v-prediction (the shipped stages'), the MSE on v weighs the x-space error
by SNR + 1, the paper's choice, bounded at the high-noise end where a few-step sampler starts;
an eps teacher's student is trained to predict v (eps is ill-conditioned there: x0 = (z - sigma
eps) / alpha with alpha near 0).
"""
from __future__ import annotations

import torch

from ..base.errors import CascadeError
from .conditioning import TextCond
from .denoiser import Denoiser, NetInputs
from .plan import SamplingPlan, Start, sigma_grid

SAMPLER, SPACING = "ddim", "trailing"


def student_sigmas(stage, steps: int) -> torch.Tensor:
    """The descending sigma grid (``steps`` + 1 entries, the last 0) a student of ``steps``
    samples: DDIM on trailing spacing (a refiner: over its whole trained range)."""
    start = Start.partial(1.0) if stage.config.role == "refiner" else Start()
    plan = SamplingPlan(sampler=SAMPLER, steps=steps, spacing=SPACING, start=start)
    return sigma_grid(plan, stage).sigmas.double()


def midpoints(stage, sigmas: torch.Tensor) -> torch.Tensor:
    """The teacher's intermediate level between each pair of grid points: halfway in time (the
    level 0 counted as timestep -1), so for trailing grids the midpoints of n steps are the grid
    points of 2n (up to rounding to whole timesteps)."""
    sched = stage.schedule
    t = sched.sigma_to_t(sigmas[:-1]).double()
    t_next = torch.cat([t[1:], t.new_tensor([-1.0])])
    mid = (t + t_next) / 2
    out = sched.t_to_sigma(mid.clamp(min=0)).double()
    # below timestep 0 the level falls linearly to 0
    return torch.where(mid < 0, out * (mid + 1), out)


def two_teacher_steps(teacher, x: torch.Tensor, levels: tuple) -> torch.Tensor:
    """``x`` after the teacher's two DDIM steps sigma -> mid -> next (``levels``: per-example
    (B,) tensors)."""
    sigma, mid, nxt = (v.view(-1, 1, 1, 1).to(x.device, torch.float32) for v in levels)
    d1 = teacher(x, levels[0])
    x_mid = d1 + (mid / sigma) * (x - d1)
    d2 = teacher(x_mid, levels[1])
    return d2 + (nxt / mid) * (x_mid - d2)


def distillation_target(x: torch.Tensor, x_next: torch.Tensor, *, sigma,
                        sigma_next) -> torch.Tensor:
    """The clean image whose single DDIM step from ``x`` at ``sigma`` lands on ``x_next``."""
    r = (sigma_next / sigma).view(-1, 1, 1, 1).to(x.device, torch.float32)
    return (x_next - r * x) / (1 - r)


def network_target(param: str, x_tilde, zt, *, a, b) -> torch.Tensor:
    """What a network of parameterization ``param`` must output so that its clean-image estimate
    at ``z_t = a x0 + b eps`` is ``x_tilde``."""
    if param == "v":
        return (a * zt - x_tilde) / b
    if param == "x0":
        return x_tilde
    raise CascadeError("a distilled student predicts v or x0", "v or x0", param)


def distillation_loss(student, teacher, batch: dict, *, grid: tuple, model=None) -> torch.Tensor:
    """Per-example MSE of ``student``'s output against the target its teacher's two DDIM steps
    give. ``batch``: ``x0``, ``noise``, ``step`` (index into the grid, (B,)), and ``label``,
    ``cond``, ``s``, ``text`` where the stage takes them; ``grid``: (sigmas, midpoints) of
    ``student_sigmas`` and ``midpoints``; ``model``: what runs the student's network (a DDP
    wrapper), the student itself by default."""
    sigmas, mids = grid
    i = batch["step"].cpu()
    sigma, mid, nxt = sigmas[i], mids[i], sigmas[i + 1]
    x0, noise = batch["x0"], batch["noise"]
    s = sigma.view(-1, 1, 1, 1).to(x0.device, torch.float32)
    x = x0 + s * noise
    tokens = batch.get("text")
    inputs = NetInputs(labels=batch.get("label"), cond=batch.get("cond"),
                       aug_level=batch.get("s"),
                       text=None if tokens is None else TextCond(tokens))
    with torch.no_grad():
        denoise = Denoiser(teacher, SamplingPlan(sampler=SAMPLER, steps=1), inputs)
        x_tilde = distillation_target(x, two_teacher_steps(denoise, x, (sigma, mid, nxt)),
                                      sigma=sigma, sigma_next=nxt)
    a = 1 / (1 + s ** 2).sqrt()
    b = s * a
    zt = a * x
    c_noise = student.noise_input(sigma.to(x0.device))
    out = (model or student)(zt, c_noise, cond=batch.get("cond"), aug_level=batch.get("s"),
                             labels=batch.get("label"), text=batch.get("text")).float()
    C = student.config.channels
    target = network_target(student.config.parameterization, x_tilde, zt, a=a, b=b)
    return ((out[:, :C] - target) ** 2).mean(dim=(1, 2, 3))
