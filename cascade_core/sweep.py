"""Sweeps: one clean image through an SR stage or a refiner over a grid of settings (XY plot).

The CDM paper picks the augmentation level ``s`` by a search after training;
this renders that search (and steps, sampler, spacing, guidance, seed) as a
grid. Every cell uses the same noise seeds, so the only difference between
two cells is the axis value. The input must be a clean image: an already
augmented ``CDM_LOWRES`` would make the ``s`` axis meaningless.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import CascadeError, SamplingInterrupted
from .handover import make_condition
from .pipeline import refine, super_resolve
from .process.noise import AUGMENT_SEED_OFFSET, NoiseSource
from .process.samplers import SAMPLERS
from .process.schedules import SPACINGS

MAX_CELLS = 64
AXES = {"s": float, "steps": int, "sampler": str, "spacing": str, "guidance": float, "seed": int,
        "strength": float}
SETTING = {"sampler": "sampler", "spacing": "spacing"}  # axis name -> keyword of the core call


@dataclass(frozen=True)
class Axis:
    """An axis of the grid: a setting and its values in order."""

    name: str
    values: tuple

    def label(self, value) -> str:
        """``s=0.1``, ``steps=20``, ``dpmpp_2m``."""
        return str(value) if self.name in ("sampler", "spacing") else f"{self.name}={value:g}"


def parse_axis(name: str, text: str) -> Axis:
    """An axis from a typed list such as ``0, 0.1, 0.2`` or ``euler, dpmpp_2m``."""
    if name not in AXES:
        raise CascadeError("unknown sweep axis", f"one of {sorted(AXES)}", repr(name))
    items = [t.strip() for t in str(text).replace(";", ",").split(",") if t.strip()]
    if not items:
        raise CascadeError(f"the {name} axis has no values", "a comma-separated list, e.g. "
                           "0, 0.1, 0.2", repr(text))
    kind = AXES[name]
    try:
        values = tuple(kind(float(t)) if kind is int else kind(t) for t in items)
    except ValueError:
        raise CascadeError(f"the {name} axis has a value that is not a number",
                           "numbers separated by commas", repr(text)) from None
    _check_values(name, values)
    return Axis(name, values)


def _check_values(name: str, values: tuple):
    allowed = {"sampler": SAMPLERS, "spacing": SPACINGS}.get(name)
    bad = [v for v in values if allowed is not None and v not in allowed]
    if name in ("s", "strength"):
        bad = [v for v in values if not 0 <= v <= 1]
    elif name == "steps":
        bad = [v for v in values if not 1 <= v <= 1000]
    elif name in ("guidance", "seed"):
        bad = [v for v in values if v < 0 or v != v]
    if bad:
        expected = f"one of {sorted(allowed)}" if allowed is not None else "values in range"
        raise CascadeError(f"the {name} axis has values out of range", expected, bad)


def cells_of(x: Axis, y: Axis | None) -> list[dict]:
    """The settings that differ per cell, row by row (y), then column by column (x)."""
    rows = y.values if y is not None else (None,)
    cells = [{x.name: xv, **({y.name: yv} if y is not None else {})}
             for yv in rows for xv in x.values]
    if len(cells) > MAX_CELLS:
        raise CascadeError("too many sweep cells", f"at most {MAX_CELLS}", len(cells))
    if y is not None and y.name == x.name:
        raise CascadeError("the two sweep axes are the same setting", "two different axes", x.name)
    return cells


def run_sweep(stage, image: torch.Tensor, cells: list[dict], settings: dict, progress=None):
    """Each cell's output (N, C, H, W): ``image`` (1, C, h, w) through ``stage`` with
    ``settings`` (seed, steps, sampler, spacing, guidance, s, labels, dtype, strength) updated by
    the cell. ``progress(done, total)`` is called after every model step of every cell; raising
    from it stops the sweep."""
    total = sum(int(c.get("steps", settings["steps"])) for c in cells)
    done, out = 0, []
    for cell in cells:
        cfg = {**settings, **cell}
        offset = done

        def step(info, offset=offset):
            if progress is not None:
                progress(offset + info["i"] + 1, total, info)

        out.append(_one_cell(stage, image, cfg, callback=step))
        done += int(cfg["steps"])
        if progress is not None:
            progress(done, total, None)  # between cells: an interrupt lands here too
    return torch.cat(out)


def _one_cell(stage, image, cfg: dict, callback):
    common = dict(seed=int(cfg["seed"]), steps=int(cfg["steps"]), sampler=cfg["sampler"],
                  spacing=cfg["spacing"], labels=cfg.get("labels"), guidance=cfg["guidance"],
                  callback=callback, dtype=cfg.get("dtype", torch.float32))
    if stage.config.role == "sr":
        noise = NoiseSource.from_seed(int(cfg["seed"]) + AUGMENT_SEED_OFFSET, image.shape[0])
        cond = make_condition(image, float(cfg["s"]), noise,
                              schedule=stage.config.augmentation.schedule)
        return super_resolve(stage, cond, **common)
    if stage.config.role == "refiner":
        return refine(stage, image, strength=float(cfg["strength"]), s=float(cfg["s"]), **common)
    raise CascadeError("a sweep runs an SR stage or a refiner on an image",
                       "an sr or refiner stage", stage.config.describe(), stage=stage.name)


__all__ = ["AXES", "Axis", "MAX_CELLS", "SamplingInterrupted", "cells_of", "parse_axis",
           "run_sweep"]
