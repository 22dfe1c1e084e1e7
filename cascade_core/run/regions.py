"""Parallel cascades: several members denoise one shared canvas, their estimates merged per pixel
at every evaluation (MultiDiffusion, Bar-Tal et al. 2023; composable diffusion, Liu et al. 2022).

A ``Region`` is a member: a stage, its conditioning (classes, a prompt), where it works (a box in
pixels, or a soft mask over the whole canvas) and a weight. At every evaluation each member
denoises the crop of the shared ``x_t`` under its region, and the clean-image estimates are
averaged per pixel with weight x mask, normalised where members overlap. One ``x_t``, one noise
stream, one sampler, whatever the sampler: the merged denoiser is just another ``x0 = D(x,
sigma)``.

**The combination rule** is the weighted average of x0 estimates, for regions and for
whole-canvas composition alike: it needs nothing but each member's own prediction, so stages
with different schedules, parameterisations or no null class merge (the VE noise level is the
common currency, each member turning it into its own network input); the guidance-style sum of
differences from an unconditional estimate (composable diffusion's) needs a null class or an
empty prompt in every member and is left to a member's own guidance scale.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..base.errors import CascadeError, check_finite
from ..process.noise import NoiseSource
from .conditioning import TextCond
from .denoiser import Denoiser, NetInputs, Prediction
from .handover import convert_level
from .plan import sigma_grid
from .sampler_run import sample_with
from .tiling import plan_tiles


@dataclass(frozen=True)
class Region:
    """One member of a merged run: ``stage``; ``labels`` (B,) or None and ``text``; ``box``
    (top, left, height, width) in canvas pixels, or ``mask`` (H, W) in [0, 1] over the whole
    canvas (neither: the whole canvas); ``weight`` >= 0."""

    stage: object
    labels: torch.Tensor | None = None
    box: tuple | None = None
    mask: torch.Tensor | None = None
    weight: float = 1.0
    text: TextCond | None = None

    def __post_init__(self):
        w = float(self.weight)
        if not math.isfinite(w) or w < 0:
            raise CascadeError("a region's weight must be finite and not negative", ">= 0", w,
                               stage=getattr(self.stage, "name", None))
        if self.box is not None and self.mask is not None:
            raise CascadeError("a region is a box or a mask, not both", "one of them",
                               "both", stage=self.stage.name)


def region_mask(region: Region, canvas: tuple) -> tuple:
    """(mask (H, W) float, (top, left, height, width) of its bounding box) on ``canvas``."""
    H, W = canvas
    name = region.stage.name
    if region.mask is not None:
        mask = torch.as_tensor(region.mask, dtype=torch.float32)
        if tuple(mask.shape) != (H, W):
            raise CascadeError("a region's mask must cover the canvas", f"({H}, {W})",
                               tuple(mask.shape), stage=name)
        check_finite("a region's mask", mask)
        if bool((mask < 0).any()) or bool((mask > 1).any()):
            raise CascadeError("a region's mask must lie in [0, 1]", "values in [0, 1]",
                               f"[{float(mask.min()):.3g}, {float(mask.max()):.3g}]", stage=name)
        rows, cols = mask.sum(1).nonzero(), mask.sum(0).nonzero()
        if len(rows) == 0:
            return mask, None
        top, left = int(rows[0]), int(cols[0])
        return mask, (top, left, int(rows[-1]) - top + 1, int(cols[-1]) - left + 1)
    top, left, h, w = region.box if region.box is not None else (0, 0, H, W)
    if top < 0 or left < 0 or h < 1 or w < 1 or top + h > H or left + w > W:
        raise CascadeError("a region must lie inside the canvas", f"a box inside {H}x{W} "
                           "(top, left, height, width)", (top, left, h, w), stage=name)
    mask = torch.zeros(H, W)
    mask[top:top + h, left:left + w] = 1
    return mask, (top, left, h, w)


class MergedDenoiser:
    """Several members seen as one ``x0 = D(x, sigma)`` over the canvas. ``stage`` (the first
    member's) gives the run its device, precision and name."""

    classifier = None  # classifier guidance does not merge: a member guides with its own

    def __init__(self, regions: list, plan, *, canvas: tuple, batch: int, lowres=None):
        if not regions:
            raise CascadeError("a merged run needs at least one region", ">= 1 region", 0)
        self.stage, self.canvas = regions[0].stage, tuple(canvas)
        self.members, total = [], torch.zeros(self.canvas)
        channels = {r.stage.config.channels for r in regions}
        if len(channels) != 1:
            raise CascadeError("the members' outputs cannot share a canvas",
                               "stages with the same number of channels", sorted(channels))
        for r in regions:
            mask, box = region_mask(r, self.canvas)
            if box is None or r.weight == 0:
                continue
            m = r.stage.config.size_multiple
            if box[2] % m or box[3] % m:
                raise CascadeError(f"a region's size must be a multiple of the stage's total "
                                   f"downsampling ({m} px)", f"multiples of {m}", box[2:],
                                   stage=r.stage.name)
            text = None if r.text is None else r.text.repeat_to(batch)
            inputs = NetInputs(labels=r.labels, text=text, **conditioning_crop(r.stage, lowres,
                                                                               box=box))
            inputs = inputs.to(r.stage.device)
            shape = (batch, r.stage.config.channels, box[2], box[3])
            denoiser = Denoiser(r.stage, plan, inputs,
                                tiles=plan_tiles(r.stage, shape, plan.tiling))
            self.members.append((denoiser, mask * r.weight, box))
            total += mask * r.weight
        uncovered = (total <= 0).nonzero()
        if len(uncovered):
            (y0, x0), (y1, x1) = uncovered.min(0).values.tolist(), uncovered.max(0).values.tolist()
            raise CascadeError("every pixel of the canvas needs a region with weight > 0",
                               "a covered canvas", f"{len(uncovered)} uncovered pixel(s) in rows "
                               f"{y0}-{y1}, columns {x0}-{x1}")
        self.total = total

    def __call__(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """The merged clean-image estimate."""
        return self.predict(x, sigma).x0

    def predict(self, x: torch.Tensor, sigma) -> Prediction:
        """Each member's estimate on its crop, merged by weight x mask, normalised; the learned
        variance fraction likewise where every member learns it."""
        x0 = torch.zeros_like(x, dtype=torch.float32)
        frac, learned = torch.zeros_like(x0), True
        for denoiser, weight, (top, left, h, w) in self.members:
            crop = x[..., top:top + h, left:left + w]
            pred = denoiser.predict(crop, sigma)
            wt = weight[top:top + h, left:left + w].to(x.device)
            x0[..., top:top + h, left:left + w] += pred.x0 * wt
            if pred.var_frac is None:
                learned = False
            else:
                frac[..., top:top + h, left:left + w] += pred.var_frac * wt
        total = self.total.to(x.device)
        return Prediction(x0 / total, frac / total if learned else None)


def conditioning_crop(stage, lowres, *, box: tuple) -> dict:
    """An SR member's share of the low-res handover: the crop under its box (box / factor) and
    the level on its own schedule; nothing for a base stage."""
    if stage.config.role != "sr":
        return {}
    name = stage.name
    if lowres is None:
        raise CascadeError("an SR region needs the low-res image", "a lowres handover", "none",
                           stage=name)
    if stage.config.augmentation.apply != "lowres":
        raise CascadeError("regions of a stage that noises its input after upsampling (IF stage "
                           "II) are not supported", "an SR stage of ours or ADM's",
                           stage.config.augmentation.apply, stage=name)
    f = stage.config.factor
    top, left, h, w = box
    if top % f or left % f or h % f or w % f:
        raise CascadeError(f"an SR region must lie on the low-res grid (multiples of {f} px)",
                           f"a box in multiples of {f}", box, stage=name)
    cond = lowres.image[..., top // f:(top + h) // f, left // f:(left + w) // f]
    level = convert_level(lowres.level, lowres.schedule, stage.config.augmentation.schedule)
    return {"cond": cond, "aug_level": level}


def generate_regions(regions: list, plan, *, canvas: tuple, batch: int, seed: int,
                     lowres=None):
    """Sample a ``canvas`` (H, W) of ``batch`` images from noise with ``regions`` merged at every
    evaluation, on the first member's noise grid; the images in [-1, 1] on the CPU. Image i uses
    ``seed + i``, as every run does. SR members are conditioned on their crop of ``lowres`` (a
    ``LowResCond`` of the canvas at low resolution)."""
    lead = regions[0].stage if regions else None
    model = MergedDenoiser(regions, plan, canvas=canvas, batch=batch, lowres=lowres)
    noise = NoiseSource.from_seed(seed, batch)
    sigmas = sigma_grid(plan, lead).sigmas
    H, W = canvas
    x = noise.randn((lead.config.channels, H, W), lead.device) * math.sqrt(
        1 + float(sigmas[0]) ** 2)
    x, _ = sample_with(model, x, sigmas, plan=plan, noise=noise)
    return x.clamp(-1, 1).cpu()
