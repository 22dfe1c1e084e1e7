"""Widget declarations shared by the sampling nodes (V1 node API)."""
from __future__ import annotations

import torch

from . import comfy_bridge as bridge
from ._core import core

LOWRES_TYPE = "CDM_LOWRES"
STAGE_TYPE = "CDM_STAGE"
TEXT_TYPE = "CDM_TEXT"  # a prompt's embeddings for a text stage (CDM Text Encode)
CATEGORY = "pixel-space cascade"  # not "cascade": ComfyUI's library shows Stable Cascade there
# widgets renamed in 0.2.0: old name -> new name. UI workflows store values by position and keep
# loading; the headless runner maps old names in dict-valued widgets and --set.
RENAMED = {"sampler": "sampler_name", "schedule": "spacing"}
MAX_SEED = 0xFFFFFFFFFFFFFFFF


def seed():
    return ("INT", {"default": 0, "min": 0, "max": MAX_SEED, "control_after_generate": True,
                    "tooltip": "image i of the batch uses seed + i"})


def steps(default=30):
    tip = (f"denoising steps (1-1000; this node's default {default}). Time grows linearly with "
           "steps; dpmpp_2m is close to converged at 20-30, euler needs more. 0: as the stage "
           "says (a distilled stage's own sampler, steps and spacing; 20 for other stages)")
    return ("INT", {"default": default, "min": 0, "max": 1000, "tooltip": tip})


def sampler(default="dpmpp_2m"):
    tip = ("the sampler: dpmpp_2m (default, good at 20-30 steps), euler (simple, needs more "
           "steps), heun (two evaluations per step), ddim, ancestral samplers add fresh noise "
           "each step (more varied, never converge to one image)")
    return (sorted(core.SAMPLERS), {"default": default, "tooltip": tip})


def stage(what="a stage"):
    """A CDM_STAGE input, with what kind of stage the node needs."""
    return (STAGE_TYPE, {"tooltip": f"{what}, from a CDM Stage Loader"})


def image(tip: str):
    return ("IMAGE", {"tooltip": tip})


def batch_size():
    return ("INT", {"default": 4, "min": 1, "max": 256,
                    "tooltip": "images made at once (1-256); image i uses seed + i, so image 3 "
                               "of a batch equals a batch of 1 with seed + 3"})


def augmentation_level(default=0.1, tip=None):
    return ("FLOAT", {"default": default, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip": tip or (
        "conditioning-augmentation level s in [0, 1] on the augmentation schedule: 0 = clean, 1 = "
        "pure noise. The next stage is told s and treats the input as that noisy: around 0.1 "
        "hides a base stage's artifacts; higher gives more invented detail, less fidelity")})


def spacing(default="karras"):
    """How the sampler's noise levels are spaced: the core's ``spacing``. ComfyUI's ``scheduler``
    widget offers a different set of values, so the name is not shared."""
    tip = "spacing of the noise levels: karras (rho=7), uniform, trailing or ddim over the steps"
    return (list(core.SPACINGS), {"default": default, "tooltip": tip})


def classes(default="random"):
    tip = ("a class name or index, one per image separated by commas, 'random', 'all classes' "
           "(grouped) or 'unconditional'")
    return ("STRING", {"default": default, "tooltip": tip})


def guidance():
    return ("FLOAT", {"default": 1.0, "min": 0.0, "max": 20.0, "step": 0.1,
                      "tooltip": "classifier-free guidance scale; 1 = the paper's guidance-free "
                                 "sampling"})


def dtype():
    tip = ("inference precision. auto: bf16 where the device computes it natively (CPUs with "
           "AVX512-BF16 or AMX, recent GPUs), fp16 on older GPUs, fp32 elsewhere; the precision "
           "used is written into the saved PNG. fp32 gives the same image for a seed everywhere")
    return (list(core.precision.CHOICES), {"default": "auto", "tooltip": tip})


def torch_dtype(name: str, record=None, weights: torch.dtype = torch.float32) -> torch.dtype:
    """The widget's precision resolved for the compute device (an error naming the device's
    precisions when it has not this one). ``record``: a node's ``(extra_pnginfo, unique_id)``;
    the choice is noted there, so that SaveImage writes it into the PNG. A stage whose
    ``weights`` are stored in a low precision computes in it whatever was asked."""
    device = bridge.compute_device()
    resolved = core.precision.resolve_name(name, device)
    if weights != torch.float32:
        resolved = core.precision.NAMES[weights]
    info, node_id = record if record is not None else (None, None)
    if isinstance(info, dict):
        info.setdefault(PRECISION_KEY, {})[str(node_id)] = {
            "dtype": resolved, "requested": name, "device": core.precision.describe(device)}
    return core.precision.DTYPES[resolved]


PRECISION_KEY = "cascade_precision"  # PNG text chunk: node id -> the precision it sampled in
HIDDEN = {"unique_id": "UNIQUE_ID", "extra_pnginfo": "EXTRA_PNGINFO"}


def text():
    """The optional prompt input of every sampling node."""
    return (TEXT_TYPE, {"tooltip": "a prompt, from CDM Text Encode: needed by a stage that is "
                                   "conditioned on text (DeepFloyd IF), refused by one that is "
                                   "not"})


def canvas_side(what: str):
    """A canvas width or height (0: the stage's own size)."""
    return ("INT", {"default": 0, "min": 0, "max": 8192, "step": 8,
                    "tooltip": f"the canvas {what} in pixels (0: the stage's own size); a "
                               "convolutional stage draws wider canvases than it was trained "
                               "on, and regions place their members on it"})


def tile_size():
    tip = ("0: split each evaluation into blended tiles only when one piece would not fit in "
           "memory; -1: never (too large is an error); N: tiles of N pixels")
    return ("INT", {"default": 0, "min": -1, "max": 4096, "step": 1, "tooltip": tip})


def tiling(value: int):
    """The core's ``tiling`` argument for a tile_size widget value."""
    return {0: "auto", -1: "off"}.get(int(value), int(value))


def classifier_scale():
    tip = "classifier guidance scale (ADM-G: 1.0 for 64/256 px, 0.5 for 128 px, 4.0 for 512 px)"
    return ("FLOAT", {"default": 1.0, "min": 0.0, "max": 100.0, "step": 0.1, "tooltip": tip})
