"""Sweep (XY plot): one clean image through an SR stage or refiner over a grid of settings."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from . import comfy_bridge as bridge
from . import widgets as W
from ._core import core
from .images import from_comfy, to_comfy
from .plan_from_widgets import sampling_plan
from .sweep_axes import cells_of, parse_axis

sweep = core.sweep
NONE = "none"
AXIS_VALUES_TIP = ("the values, separated by commas: numbers for s and strength (0-1), steps "
                   "(1-1000), guidance (0-20) and seed, or names for sampler and spacing; at most "
                   "64 cells in all")
MIN_CELL = 96  # cells are shown at least this large (nearest-neighbour), so labels fit


def labelled_grid(cells: torch.Tensor, x, y) -> torch.Tensor:
    """(N, C, H, W) cells in [-1, 1], row by row, as one (C, H', W') grid with the axis values
    written above the columns and left of the rows (pillow's built-in font)."""
    n, _, h, w = cells.shape
    scale = max(1, -(-MIN_CELL // min(h, w)))
    big = F.interpolate(cells.float(), scale_factor=scale, mode="nearest") if scale > 1 else cells
    h, w = big.shape[-2:]
    rows = len(y.values) if y is not None else 1
    cols = len(x.values)
    font = ImageFont.load_default()
    left, top, pad = (90 if y is not None else 0), 24, 4
    canvas = Image.new("RGB", (left + cols * (w + pad), top + rows * (h + pad)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    pixels = core.to_uint8(big)  # (N, H, W, 3)
    for k in range(n):
        r, c = divmod(k, cols)
        canvas.paste(Image.fromarray(pixels[k]), (left + c * (w + pad), top + r * (h + pad)))
    for c, value in enumerate(x.values):
        draw.text((left + c * (w + pad) + 2, 6), x.label(value), fill=(0, 0, 0), font=font)
    for r, value in enumerate(y.values if y is not None else ()):
        draw.text((4, top + r * (h + pad) + h // 2 - 6), y.label(value), fill=(0, 0, 0),
                  font=font)
    return core.from_uint8(np.asarray(canvas))


class CDMSweep:
    """Render a clean image through an SR stage or a refiner over one or two axes (s, steps,
    sampler, spacing, guidance, seed, strength); every cell uses the same noise seeds."""

    CATEGORY = W.CATEGORY
    RETURN_TYPES = ("IMAGE", "IMAGE", "STRING")
    RETURN_NAMES = ("grid", "cells", "axes")
    OUTPUT_TOOLTIPS = ("the labelled grid", "every cell as a batch of images, row by row",
                       "the axes and their values, as text")
    FUNCTION = "sweep"
    DESCRIPTION = ("XY plot: the paper's post-training search for the augmentation level s, and "
                   "any other setting, as one labelled grid. Give it a clean IMAGE (a base "
                   "output or any image), never an augmented CDM_LOWRES.")

    @classmethod
    def INPUT_TYPES(cls):
        axes = sorted(sweep.SWEEPABLE)
        return {"required": {
            "stage": W.stage("a super-resolution stage or a refiner"),
            "image": ("IMAGE", {"tooltip": "a clean image; the first of a batch is swept"}),
            "x_axis": (axes, {"default": "s", "tooltip": "the setting that changes along a row"}),
            "x_values": ("STRING", {"default": "0, 0.1, 0.2, 0.4", "tooltip": AXIS_VALUES_TIP}),
            "y_axis": ([NONE, *axes], {"default": "steps",
                                       "tooltip": "the setting that changes down a column (none: "
                                                  "one row); not the same as x_axis"}),
            "y_values": ("STRING", {"default": "10, 20, 40", "tooltip": AXIS_VALUES_TIP}),
            "seed": W.seed(), "steps": W.steps(20), "sampler_name": W.sampler(),
            "spacing": W.spacing(), "class_name": W.classes("unconditional"),
            "guidance": W.guidance(),
            "s": ("FLOAT", {"default": 0.1, "min": 0.0, "max": 1.0, "step": 0.01,
                            "tooltip": "the augmentation level where it is not an axis"}),
            "strength": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.01,
                                   "tooltip": "refiner strength where it is not an axis"}),
            "dtype": W.dtype(),
        }, "optional": {"text": W.text()}, "hidden": W.HIDDEN}

    def sweep(self, stage, image, x_axis, x_values, y_axis, y_values, seed, steps, sampler_name,
              spacing, class_name, guidance, s, strength, dtype, text=None, unique_id=None,
              extra_pnginfo=None):
        st = stage.stage
        if y_axis == x_axis:  # said before either list is read against its range
            raise core.CascadeError("the two sweep axes are the same setting",
                                    "two different axes (or y_axis none)", x_axis)
        x = parse_axis(x_axis, x_values)
        y = None if y_axis == NONE else parse_axis(y_axis, y_values)
        cells = cells_of(x, y)
        img = from_comfy(image)[:1]
        labels = (None if not st.config.num_classes
                  else core.parse_classes(st.config, class_name, 1, seed=seed, stage=st.name))
        plan = sampling_plan(st, locals(), record=(extra_pnginfo, unique_id), progress=False)
        settings = sweep.SweepSettings(plan=plan, seed=seed, labels=labels, s=s,
                                       strength=strength, text=text)
        bar = bridge.Progress(sum(int(c.get("steps", plan.steps)) for c in cells))

        def progress(done, total, info):
            bridge.check_interrupt()
            if info is not None:
                bar({**info, "i": done - 1})

        with bridge.on_compute_device(st):
            out = sweep.run_sweep(st, img, cells=cells, settings=settings, progress=progress)
        grid = labelled_grid(out, x, y)
        axes = f"x: {x.name} = {list(x.values)}" + (f"; y: {y.name} = {list(y.values)}" if y
                                                    else "")
        device = bridge.intermediate_device()
        return to_comfy(grid[None], device), to_comfy(out, device), axes
