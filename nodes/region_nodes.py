"""CDM Region: one member of a parallel cascade (a stage, its class or prompt, where on the canvas,
a weight); chained, the nodes build the list a sampling node merges at every step."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from . import comfy_bridge as bridge
from . import widgets as W
from ._core import core
from .cost_notice import announce

REGIONS_TYPE = "CDM_REGIONS"
FROM_INPUT = "from input"


@dataclass(frozen=True)
class RegionSpec:
    """A region as the node gives it, resolved against the canvas by the sampler."""

    stage: object       # a LoadedStage
    class_name: str
    box: tuple          # (left, top, width, height)
    units: str          # "fraction" or "pixels"
    weight: float
    mask: torch.Tensor | None = None
    text: object = None

    def resolve(self, *, canvas: tuple, run: dict) -> core.Region:
        """The engine's Region on a ``canvas`` (H, W): the box in pixels, the classes parsed
        ("from input": the classes of the low-res region under it, ``run["lowres"]``)."""
        st = self.stage.stage
        if self.mask is not None:
            mask = torch.as_tensor(self.mask, dtype=torch.float32)
            mask = mask[0] if mask.ndim == 3 else mask
            return core.Region(st, self._labels(run, where=mask), mask=mask, weight=self.weight,
                               text=self.text)
        H, W = canvas
        left, top, width, height = self.box
        if self.units == "fraction":
            left, width = round(left * W), round(width * W)
            top, height = round(top * H), round(height * H)
        box = (int(top), int(left), int(height), int(width))
        where = torch.zeros(canvas)
        where[box[0]:box[0] + box[2], box[1]:box[1] + box[3]] = 1
        return core.Region(st, self._labels(run, where=where), box=box, weight=self.weight,
                           text=self.text)

    def _labels(self, run: dict, *, where: torch.Tensor):
        st = self.stage.stage
        if self.class_name.strip().lower() != FROM_INPUT:
            return core.parse_classes(st.config, self.class_name, run["batch"], seed=run["seed"],
                                      stage=st.name)
        low = run.get("lowres")
        if not st.config.num_classes or low is None:
            return None
        if not low.regions:
            return low.labels
        f = where.shape[-1] // low.image.shape[-1]
        small = torch.nn.functional.avg_pool2d(where[None, None], f)[0, 0] if f > 1 else where
        overlap = [float((core.region_mask(r, tuple(small.shape))[0] * small).sum())
                   for r in low.regions]
        return low.regions[max(range(len(overlap)), key=overlap.__getitem__)].labels


class CDMRegion:
    """A stage with its class (or prompt) on a box or mask of the canvas: a parallel member."""

    CATEGORY = W.CATEGORY
    RETURN_TYPES = (REGIONS_TYPE,)
    RETURN_NAMES = ("regions",)
    OUTPUT_TOOLTIPS = ("the regions so far: into the next CDM Region, or the regions input of a "
                       "Base Sampler, Super-Resolution Stage or Refiner",)
    FUNCTION = "region"
    DESCRIPTION = ("One member of a parallel cascade: a stage denoises its box (or mask) of a "
                   "wider canvas with its own class or prompt, and the sampler averages the "
                   "members' clean-image estimates where they overlap, at every step "
                   "(MultiDiffusion). Chain regions to build the list; let them overlap by a "
                   "quarter of their width for smooth joins.")

    @classmethod
    def INPUT_TYPES(cls):
        def place(what, default):
            return ("FLOAT", {"default": default, "min": 0.0, "max": 65536.0, "step": 0.05,
                              "tooltip": f"the region's {what}: a fraction of the canvas, or "
                                         "pixels (units)"})
        return {"required": {
            "stage": W.stage("the stage that draws this region"),
            "class_name": W.classes("random"),
            "left": place("left edge", 0.0), "top": place("top edge", 0.0),
            "width": place("width", 1.0), "height": place("height", 1.0),
            "units": (["fraction", "pixels"], {"default": "fraction",
                                                "tooltip": "how left/top/width/height are read"}),
            "weight": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 100.0, "step": 0.1,
                                 "tooltip": "how much this region counts where regions "
                                            "overlap (0: not at all)"}),
        }, "optional": {
            "regions": (REGIONS_TYPE, {"tooltip": "the regions before this one"}),
            "mask": ("MASK", {"tooltip": "a ComfyUI mask of the canvas's size: used instead of "
                                         "the box"}),
            "text": W.text(),
        }}

    def region(self, stage, class_name, left, top, width, height, units, weight, regions=None,
               mask=None, text=None):
        with named("CDM Region"):
            core.Region(stage.stage, weight=weight)  # a weight < 0 or not finite: said here
        spec = RegionSpec(stage=stage, class_name=class_name, box=(left, top, width, height),
                          units=units, weight=float(weight), mask=mask, text=text)
        return ((*(regions or ()), spec),)


@contextlib.contextmanager
def named(node: str):
    """Errors of a parallel run say which node met them."""
    try:
        yield
    except core.CascadeError as e:
        raise core.CascadeError(f"{node}: {e}", stage=None) from None


@contextlib.contextmanager
def placed_regions(node: str, st, regions, *, run: dict):
    """Resolve the node's ``regions`` on ``run["canvas"]`` and hold every member's stage (and
    ``st``, whose noise grid the run walks) on the compute device; errors name ``node``."""
    with named(node):
        members = tuple(spec if isinstance(spec, core.Region) else
                        spec.resolve(canvas=run["canvas"], run=run) for spec in regions)
    stages = list({id(m.stage): m.stage for m in (core.Region(st), *members)}.values())
    with contextlib.ExitStack() as placed, named(node):
        for member_stage in stages:
            placed.enter_context(bridge.on_compute_device(member_stage))
        announce(node, st, run["plan"], shape=(run["batch"] * len(members), st.config.channels,
                                               *run["canvas"]))
        yield members
