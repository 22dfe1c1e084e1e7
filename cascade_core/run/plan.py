"""How a stage is sampled, resolved and checked once: the plan every pipeline call takes.

A node (or a script) turns its settings into one ``SamplingPlan``: the
sampler, the step grid (steps and spacing, or a given list of sigmas), where
sampling starts and stops (``Start``), guidance, precision, tiling and a
per-step callback. The plan checks every setting when it is made, with an
error that names the setting, so nothing downstream re-checks or meets a
typo deep inside a sampler. ``sigma_grid`` turns a plan into the noise levels
one stage walks.
"""
from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch

from ..base.errors import CascadeError, check_finite, check_range
from ..base.precision import CHOICES as PRECISIONS
from ..base.precision import DTYPES
from ..process.augment import AUG_SCHEDULES, aug_sigma
from ..process.samplers import SAMPLERS
from ..process.schedules import SPACINGS, karras_sigmas, sampling_sigmas, truncate_sigmas

START_MODES = ("full", "truncated", "partial")
# the samplers' own parameters; anything else a plan passes them must be one of their options
SAMPLER_ARGUMENTS = {"model", "x", "sigmas", "noise", "callback"}


@dataclass(frozen=True)
class Start:
    """Where along the noise levels a stage starts and stops.

    * ``full``: from pure noise down to 0;
    * ``truncated``: from pure noise down to the augmentation level ``level`` = s on the
      augmentation ``schedule`` (a base stage handing z_s to the next stage, CDM Algorithm 2);
    * ``partial``: a refiner from ``level`` = its strength (a fraction of its trained noise
      range) down to 0.
    """

    mode: str = "full"
    level: float = 0.0
    schedule: str = "cosine"

    def __post_init__(self):
        if self.mode not in START_MODES:
            raise CascadeError("unknown start", f"one of {START_MODES}", repr(self.mode))
        what = {"full": "level of a full start", "truncated": "truncation level s",
                "partial": "refiner strength"}[self.mode]
        level = check_range(what, self.level, 0.0, hi=1.0)
        if self.mode == "truncated" and level >= 1.0:
            raise CascadeError("truncate_s = 1 would hand the next stage pure noise: the base "
                               "stage would do nothing", "0 <= truncate_s < 1 (0: full sampling)",
                               level)
        if self.schedule not in AUG_SCHEDULES:
            raise CascadeError("unknown augmentation schedule", f"one of {AUG_SCHEDULES}",
                               repr(self.schedule))
        object.__setattr__(self, "level", level)

    @classmethod
    def truncated(cls, s: float, schedule: str = "cosine") -> Start:
        """Stop at augmentation level ``s`` (0: a full start)."""
        return cls("truncated", s, schedule) if s else cls()

    @classmethod
    def partial(cls, strength: float) -> Start:
        """A refiner's start at ``strength`` of its trained noise range."""
        return cls("partial", strength)


@dataclass(frozen=True)
class SamplingPlan:
    """Every setting of one sampling run, checked once (errors name the setting).

    ``sampler``: a registered name (``process.samplers.SAMPLERS``) or a function with the
    samplers' signature (ComfyUI's SAMPLER, ``nodes.comfy_samplers``); ``options``: its extra
    keywords (``eta``, ``variance``). ``steps`` and ``spacing`` make the grid unless ``sigmas``
    (descending, ending at 0; ComfyUI's SIGMAS) is given. ``guidance``: classifier-free guidance
    scale; ``classifier``/``classifier_scale``: a noisy classifier guiding a base stage (ADM-G).
    ``precision``: "auto", "fp32", "bf16", "fp16" or a torch dtype, resolved for the device when
    the run starts. ``tiling``: "auto", "off" or a tile side in pixels. ``clip_denoised``: clamp
    every clean-image estimate to [-1, 1] (ADM's ``clip_denoised=True``); ``threshold``: instead,
    dynamic thresholding of every estimate up to this scale (DeepFloyd IF: 1.5 for stage I, 1.0
    for stage II; 0 = off) at ``threshold_percentile`` (IF: 0.95). ``callback(info)`` runs
    after every model evaluation; raising from it stops the run; so does raising from
    ``interrupt()``, which runs between the pieces of one evaluation (regions, tiles).
    """

    sampler: str | Callable = "dpmpp_2m"
    steps: int | str = 30
    spacing: str = "karras"
    sigmas: torch.Tensor | None = None
    start: Start = field(default_factory=Start)
    guidance: float = 1.0
    precision: str | torch.dtype = "fp32"
    options: Mapping = field(default_factory=dict)
    tiling: str | int = "auto"
    clip_denoised: bool = True
    threshold: float = 0.0
    threshold_percentile: float = 0.95
    classifier: object | None = None
    classifier_scale: float = 0.0
    callback: Callable | None = None
    interrupt: Callable | None = None

    def __post_init__(self):
        set_ = object.__setattr__
        _check_sampler(self.sampler, self.options)
        set_(self, "steps", _check_steps(self.steps))
        if self.spacing not in SPACINGS:
            raise CascadeError("unknown spacing", f"one of {SPACINGS}", repr(self.spacing))
        if self.sigmas is not None:
            set_(self, "sigmas", check_sigmas(self.sigmas))
        if not isinstance(self.start, Start):
            raise CascadeError("start must be a Start", "Start(), Start.truncated(s) or "
                               "Start.partial(strength)", type(self.start).__name__)
        set_(self, "guidance", check_range("guidance", self.guidance, 0.0, hi=math.inf))
        set_(self, "classifier_scale", check_range("classifier_scale", self.classifier_scale,
                                                   0.0, hi=math.inf))
        check_finite("guidance", self.guidance)
        if self.threshold:
            set_(self, "threshold", check_range("threshold", self.threshold, 1.0, hi=100.0))
        set_(self, "threshold_percentile", check_range("threshold_percentile",
                                                       self.threshold_percentile, 0.5, hi=1.0))
        check_finite("classifier_scale", self.classifier_scale)
        if not (isinstance(self.precision, torch.dtype) and self.precision in DTYPES.values()
                or self.precision in PRECISIONS):
            raise CascadeError("unknown precision", f"one of {list(PRECISIONS)}",
                               repr(self.precision))
        set_(self, "tiling", _check_tiling(self.tiling))
        set_(self, "options", dict(self.options))

    @property
    def sampler_fn(self) -> Callable:
        """The sampler function."""
        return self.sampler if callable(self.sampler) else SAMPLERS[self.sampler]


def _check_sampler(sampler, options: Mapping):
    if callable(sampler):
        return
    if sampler not in SAMPLERS:
        raise CascadeError("unknown sampler", f"one of {sorted(SAMPLERS)}", repr(sampler))
    accepted = set(inspect.signature(SAMPLERS[sampler]).parameters) - SAMPLER_ARGUMENTS
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise CascadeError(f"unknown option(s) for the {sampler} sampler",
                           f"one of {sorted(accepted)}" if accepted else "no options", unknown)


def _check_steps(steps):
    if isinstance(steps, str) and not steps.strip().isdigit():
        return steps.strip()  # a respacing spec ("ddim25", "10,15,20"), checked with the schedule
    try:
        n = int(steps)
    except (TypeError, ValueError):
        raise CascadeError("steps must be a whole number", "an integer >= 1",
                           repr(steps)) from None
    if n != float(steps) or n < 1:
        raise CascadeError("steps out of range", "an integer >= 1", steps)
    return n


def _check_tiling(tiling):
    if tiling in ("auto", "off"):
        return tiling
    if isinstance(tiling, bool) or not isinstance(tiling, int) or tiling < 1:
        raise CascadeError("unknown tiling", "'auto', 'off' or a tile side in pixels",
                           repr(tiling))
    return tiling


def check_sigmas(sigmas, stage: str | None = None) -> torch.Tensor:
    """A given sigma grid as float64: 1-D, at least two values, finite, strictly descending and
    ending at 0 (a truncated base cuts it at its level itself)."""
    t = torch.as_tensor(sigmas).detach().to("cpu", torch.float64).flatten()
    ok = (len(t) >= 2 and bool(torch.isfinite(t).all()) and bool((t >= 0).all())
          and bool((t[1:] < t[:-1]).all()) and float(t[-1]) == 0.0)
    if not ok:
        shown = [round(float(v), 4) for v in t[:6]] + (["..."] if len(t) > 6 else [])
        raise CascadeError("SIGMAS must be a descending list of noise levels ending at 0",
                           "at least two finite values, strictly descending, the last 0 (a "
                           "truncated base stops at its level by itself)", shown, stage=stage)
    return t


@dataclass(frozen=True)
class Grid:
    """The descending VE noise levels a run walks, and the level its start is noised to."""

    sigmas: torch.Tensor
    start: float


def sigma_grid(plan: SamplingPlan, stage) -> Grid:
    """The noise levels ``stage`` walks under ``plan``.

    The full grid comes from the plan's sigmas or from steps and spacing on the stage's schedule
    (``sampling_sigmas``, the one grid builder). A truncated start cuts it so that it ends
    exactly at the level's sigma (a single entry when the level lies above the whole grid:
    nothing is sampled). A partial start begins a refiner at its strength: ``karras`` spaces the
    steps from that level down, the other spacings take the last steps of their full grid over
    the fraction of the schedule the strength covers, as ComfyUI's ``BasicScheduler`` does for
    partial denoising; given sigmas start where they start.
    """
    start = plan.start
    if start.mode == "partial":
        return _partial_grid(plan, stage)
    sigmas = plan.sigmas if plan.sigmas is not None else _full(plan, stage.schedule)
    if start.mode == "truncated":
        stop = aug_sigma(start.level, start.schedule)
        sigmas = sigmas[:1] if stop >= float(sigmas[0]) else truncate_sigmas(sigmas, stop)
    return Grid(sigmas, float(sigmas[0]))


def _full(plan: SamplingPlan, schedule) -> torch.Tensor:
    try:
        return sampling_sigmas(schedule, plan.steps, plan.spacing)
    except CascadeError as e:
        raise CascadeError(f"steps: {e}") from None


def _partial_grid(plan: SamplingPlan, stage) -> Grid:
    if plan.sigmas is not None:  # a given grid (ComfyUI's SIGMAS) says where to start
        return Grid(plan.sigmas, float(plan.sigmas[0]))
    sched, cfg = stage.schedule, stage.config
    fraction = plan.start.level * cfg.refiner_max_t
    sigma_start = float(sched.t_to_sigma(torch.tensor(fraction * (sched.T - 1))))
    steps = int(plan.steps) if not isinstance(plan.steps, str) else 0
    if steps < 1:
        raise CascadeError("a refiner's steps must be a number", "an integer >= 1",
                           repr(plan.steps), stage=stage.name)
    if plan.spacing == "karras":
        sig = karras_sigmas(steps, min(sched.sigma_min, sigma_start), sigma_start)
        return Grid(torch.cat([sig, sig.new_zeros(1)]), sigma_start)
    most = int(sched.T * fraction)
    if steps > most:
        raise CascadeError(f"too many steps for a refiner at strength {plan.start.level:g} with "
                           f"{plan.spacing} spacing (it covers {most} of the schedule's "
                           f"{sched.T} steps)", (f"steps 1..{most}, " if most else "")
                           + "karras spacing, or a higher strength", steps, stage=stage.name)
    total = min(sched.T, int(steps / fraction))
    sigmas = sampling_sigmas(sched, total, plan.spacing)[-(steps + 1):]
    return Grid(sigmas, float(sigmas[0]))
