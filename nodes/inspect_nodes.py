"""Stage Inspector: what one stage changed, as a picture and as numbers."""
from __future__ import annotations

from . import widgets as W
from ._core import core
from .images import from_comfy, to_comfy


class CDMStageInspector:
    """Compare a stage's low-res input with its output: the upsampled input, the output and a
    difference heat-map side by side, and per image the consistency (PSNR of the output brought
    back to the input's size with the cascade's downsampler), the detail added per Laplacian band
    and the colour-mean shift. Chain one after every stage to see where an error entered."""

    CATEGORY = W.CATEGORY
    RETURN_TYPES = ("IMAGE", "STRING")
    RETURN_NAMES = ("picture", "report")
    OUTPUT_TOOLTIPS = ("upsampled input | output | difference heat-map, side by side (at most "
                       "2048 px wide)", "the numbers per image, as text")
    FUNCTION = "inspect"
    DESCRIPTION = ("Compares what a stage was given with what it made: a side-by-side picture "
                   "with a difference heat-map, and per image the consistency PSNR, the detail "
                   "added per frequency band and the colour shift. Chain one after every stage "
                   "to see where an error entered.")
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "stage_input": ("IMAGE", {"tooltip": "what the stage was given (the base output)"}),
            "stage_output": ("IMAGE", {"tooltip": "what it made of it"}),
            "bands": ("INT", {"default": 3, "min": 1, "max": 6,
                              "tooltip": "Laplacian pyramid bands (finest first; the last is the "
                                         "low-pass residual)"}),
        }}

    def inspect(self, stage_input, stage_output, bands):
        low = from_comfy(stage_input, "stage_input")
        high = from_comfy(stage_output, "stage_output")
        reports = core.stage_report(low, high, levels=bands)
        factor = core.factor_between(low, high)
        lines = [f"x{factor}: {tuple(low.shape[-2:])} -> {tuple(high.shape[-2:])}"]
        lines += [f"image {i}: {r.text()}" for i, r in enumerate(reports)]
        text = "\n".join(lines)
        picture = to_comfy(core.inspection_picture(low, high))
        return {"ui": {"text": [text]}, "result": (picture, text)}
