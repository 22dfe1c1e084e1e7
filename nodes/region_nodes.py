"""CDM Region: one member of a parallel cascade (a stage, its class or prompt, where on the canvas,
a weight); chained, the nodes build the list a Base Sampler merges at every step."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from . import comfy_bridge as bridge
from . import widgets as W
from ._core import core
from .cost_notice import announce

REGIONS_TYPE = "CDM_REGIONS"


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

    def resolve(self, *, canvas: tuple, batch: int, seed: int) -> core.Region:
        """The engine's Region on a ``canvas`` (H, W): the box in pixels, the classes parsed."""
        st = self.stage.stage
        labels = core.parse_classes(st.config, self.class_name, batch, seed=seed, stage=st.name)
        if self.mask is not None:
            mask = torch.as_tensor(self.mask, dtype=torch.float32)
            mask = mask[0] if mask.ndim == 3 else mask
            return core.Region(st, labels, mask=mask, weight=self.weight, text=self.text)
        H, W = canvas
        left, top, width, height = self.box
        if self.units == "fraction":
            left, width = round(left * W), round(width * W)
            top, height = round(top * H), round(height * H)
        box = (int(top), int(left), int(height), int(width))
        return core.Region(st, labels, box=box, weight=self.weight, text=self.text)


class CDMRegion:
    """A stage with its class (or prompt) on a box or mask of the canvas: a parallel member."""

    CATEGORY = W.CATEGORY
    RETURN_TYPES = (REGIONS_TYPE,)
    RETURN_NAMES = ("regions",)
    OUTPUT_TOOLTIPS = ("the regions so far: into the next CDM Region or a Base Sampler's regions "
                       "input",)
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
        spec = RegionSpec(stage=stage, class_name=class_name, box=(left, top, width, height),
                          units=units, weight=float(weight), mask=mask, text=text)
        return ((*(regions or ()), spec),)


def sample_merged(node: str, st, regions, *, plan, run: dict) -> torch.Tensor:
    """A sampling node's run with ``regions``: each spec resolved on ``run["canvas"]`` (and SR
    members given their crop of ``run["lowres"]``), every member's stage on the compute device,
    the cost announced, all merged at every step on ``st``'s noise grid (``st`` itself draws
    nothing: weight 0). The images on the CPU."""
    members = [spec.resolve(canvas=run["canvas"], batch=run["batch"], seed=run["seed"])
               for spec in regions]
    stages = list({id(m.stage): m.stage for m in (core.Region(st), *members)}.values())
    with contextlib.ExitStack() as placed:
        for member_stage in stages:
            placed.enter_context(bridge.on_compute_device(member_stage))
        announce(node, st, plan, shape=(run["batch"] * len(members), st.config.channels,
                                        *run["canvas"]))
        return core.generate_regions([core.Region(st, weight=0.0), *members], plan,
                                     canvas=run["canvas"], batch=run["batch"],
                                     seed=run["seed"], lowres=run.get("lowres"))
