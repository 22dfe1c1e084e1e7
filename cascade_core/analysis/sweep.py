"""Sweeps: one clean image through an SR stage or a refiner over a grid of settings (XY plot).

The CDM paper picks the augmentation level ``s`` by a search after training;
this renders that search (and steps, sampler, spacing, guidance, seed,
strength) as a grid. Every cell uses the same noise seeds, so the only
difference between two cells is the axis value. The input must be a clean
image: an already augmented ``LowResCond`` would make the ``s`` axis
meaningless. Parsing the axes people type is the node's business
(``nodes/sweep_axes.py``); a cell here is a dict of settings.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from ..base.errors import CascadeError
from ..process.noise import AUGMENT_SEED_OFFSET
from ..run.conditioning import Conditioning, TextCond
from ..run.handover import make_condition
from ..run.pipeline import refine, super_resolve
from ..run.plan import SamplingPlan, Start

MAX_CELLS = 64
# what a cell may set, and its type: plan settings, and the run's seed, s and strength
SWEEPABLE = {"s": float, "steps": int, "sampler": str, "spacing": str, "guidance": float,
             "seed": int, "strength": float}
PLAN_SETTINGS = ("steps", "sampler", "spacing", "guidance")


@dataclass(frozen=True)
class SweepSettings:
    """What every cell starts from: the plan, the seed, the classes, the augmentation level
    ``s`` and (refiners) the strength; a cell replaces some of them."""

    plan: SamplingPlan
    seed: int
    labels: torch.Tensor | None = None
    s: float = 0.1
    strength: float = 0.5
    text: TextCond | None = None


def run_sweep(stage, image: torch.Tensor, cells: list[dict], settings: SweepSettings,
              progress=None) -> torch.Tensor:
    """Each cell's output (N, C, H, W): ``image`` (1, C, h, w) through ``stage`` with
    ``settings`` updated by the cell. ``progress(done, total, info)`` is called after every model
    step of every cell (``info`` None between cells); raising from it stops the sweep."""
    if stage.config.role not in ("sr", "refiner"):
        raise CascadeError("a sweep runs an SR stage or a refiner on an image",
                           "an sr or refiner stage", stage.config.describe(), stage=stage.name)
    unknown = sorted({k for c in cells for k in c} - set(SWEEPABLE))
    if unknown:
        raise CascadeError("unknown sweep setting", f"one of {sorted(SWEEPABLE)}", unknown)
    total = sum(int(c.get("steps", settings.plan.steps)) for c in cells)
    done, out = 0, []
    for cell in cells:
        offset = done

        def step(info, offset=offset):
            if progress is not None:
                progress(offset + info["i"] + 1, total, info)

        out.append(_one_cell(stage, image, settings, cell=cell, callback=step))
        done += int(cell.get("steps", settings.plan.steps))
        if progress is not None:
            progress(done, total, None)  # between cells: an interrupt lands here too
    return torch.cat(out)


def _one_cell(stage, image, settings: SweepSettings, *, cell: dict, callback):
    seed = int(cell.get("seed", settings.seed))
    s = float(cell.get("s", settings.s))
    changes = {k: cell[k] for k in PLAN_SETTINGS if k in cell}
    if stage.config.role == "sr":
        plan = replace(settings.plan, callback=callback, **changes)
        # an int seed (not a NoiseSource) is kept with the handover: an IF stage II re-noises
        # the clean image after upsampling it, with that seed (``upsampled_condition``)
        lowres = make_condition(image, s, seed + AUGMENT_SEED_OFFSET,
                                schedule=stage.config.augmentation.schedule)
        return super_resolve(stage, plan, Conditioning.for_upsampling(
            lowres, settings.labels, text=settings.text), seed=seed)
    strength = float(cell.get("strength", settings.strength))
    plan = replace(settings.plan, callback=callback, start=Start.partial(strength), **changes)
    return refine(stage, plan, Conditioning.for_refining(image, s, settings.labels,
                                                         text=settings.text), seed=seed)
