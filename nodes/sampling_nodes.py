"""The sampling nodes BaseSampler, SuperResStage and Refiner: each converts, calls one core call."""
from __future__ import annotations

from . import comfy_bridge as bridge
from . import widgets as W
from ._core import core
from .cost_notice import announce
from .images import from_comfy, to_comfy
from .plan_from_widgets import sampling_plan
from .region_nodes import FROM_INPUT, REGIONS_TYPE, placed_regions
from .stage_nodes import CLASSIFIER_TYPE

# optional inputs of every sampling node: ComfyUI's own sampler and sigma grid
COMFY_INPUTS = {"sampler": ("SAMPLER", {"tooltip": "a ComfyUI sampler (KSamplerSelect); "
                                                   "overrides sampler_name"}),
                "sigmas": ("SIGMAS", {"tooltip": "a ComfyUI sigma grid (Cascade Sigmas, Karras, "
                                                 "Exponential, ...); overrides steps and "
                                                 "spacing"})}


def _labels(stage, spec: str, batch: int, seed: int, inherited=None):
    if spec.strip().lower() == FROM_INPUT:
        if inherited is None or not stage.config.num_classes:
            return None
        return inherited
    return core.parse_classes(stage.config, spec, batch, seed=seed, stage=stage.name)


class CDMBaseSampler:
    """Sample the base stage of a cascade at its own (low) resolution."""

    CATEGORY = W.CATEGORY
    RETURN_TYPES = ("IMAGE", W.LOWRES_TYPE)
    RETURN_NAMES = ("image", "lowres")
    OUTPUT_TOOLTIPS = ("the base images (small: the base stage's resolution)",
                       "the conditioning for the next stage: clean images, or with truncate_s > "
                       "0 the partly denoised z_s and its level")
    FUNCTION = "sample"
    DESCRIPTION = ("Samples a base stage. truncate_s > 0 stops the sampler at that "
                   "conditioning-augmentation "
                   "level and hands z_s to the next stage (CDM Algorithm 2, truncated).")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "stage": W.stage("a base stage"), "seed": W.seed(), "steps": W.steps(30),
            "sampler_name": W.sampler(),
            "spacing": W.spacing(), "class_name": W.classes("random"), "guidance": W.guidance(),
            "batch_size": W.batch_size(),
            "truncate_s": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                     "tooltip": "0 = full sampling (non-truncated); s > 0 = "
                                                "truncated at s"}),
            "dtype": W.dtype(),
        }, "optional": {"classifier": (CLASSIFIER_TYPE, {"tooltip": "a noisy classifier: "
                                                                    "classifier guidance (ADM-G)"}),
                        "classifier_scale": W.classifier_scale(), **COMFY_INPUTS,
                        "text": W.text(),
                        "regions": (REGIONS_TYPE, {"tooltip": "CDM Regions: members merged on "
                                                              "one canvas at every step (the "
                                                              "stage above gives the noise "
                                                              "grid; class_name is not used)"}),
                        "canvas_width": W.canvas_side("width"),
                        "canvas_height": W.canvas_side("height")},
                "hidden": W.HIDDEN}

    def sample(self, stage, seed, steps, sampler_name, spacing, class_name, guidance, batch_size,
               truncate_s, dtype, classifier=None, classifier_scale=1.0, sampler=None,
               sigmas=None, text=None, regions=None, canvas_width=0, canvas_height=0,
               unique_id=None, extra_pnginfo=None):
        st = stage.stage
        plan = sampling_plan(st, locals(), start="truncated",
                             record=(extra_pnginfo, unique_id))
        side = st.config.resolution
        canvas = (canvas_height or side, canvas_width or side)
        if regions:
            run = dict(canvas=canvas, batch=batch_size, seed=seed, plan=plan)
            with placed_regions("CDM Base Sampler", st, regions, run=run) as members, \
                    bridge.on_compute_device(plan.classifier):
                image, lowres = core.generate(st, plan, core.Conditioning.for_base(
                    batch_size, regions=members, canvas=canvas), seed=seed)
            return to_comfy(image, bridge.intermediate_device()), lowres
        labels = _labels(st, class_name, batch_size, seed=seed)
        cond = core.Conditioning.for_base(batch_size, labels, text=text,
                                          canvas=None if canvas == (side, side) else canvas)
        with bridge.on_compute_device(st), bridge.on_compute_device(plan.classifier):
            announce("CDM Base Sampler", st, plan,
                     shape=(batch_size, st.config.channels, *canvas))
            image, lowres = core.generate(st, plan, cond, seed=seed)
        return to_comfy(image, bridge.intermediate_device()), lowres


class CDMSuperResStage:
    """Upsample low-res conditioning (from CondAugment or BaseSampler) with an SR stage."""

    CATEGORY = W.CATEGORY
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("image",)
    OUTPUT_TOOLTIPS = ("the upsampled images, at the stage's factor times the input's size",)
    FUNCTION = "upscale"
    DESCRIPTION = ("Upsamples its conditioning with a super-resolution stage: a CDM_LOWRES from "
                   "Cond Augment (any IMAGE, augmented to level s) or from a Base Sampler "
                   "(truncated or not). The stage sees the upsampled input and adds detail; "
                   "tile_size splits large outputs into blended tiles.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "stage": W.stage("a super-resolution stage"),
            "lowres": (W.LOWRES_TYPE, {"tooltip": "the low-res conditioning: from Cond Augment "
                                                  "or a Base Sampler's lowres output"}),
            "seed": W.seed(),
            "steps": W.steps(30), "sampler_name": W.sampler(), "spacing": W.spacing(),
            "class_name": W.classes(FROM_INPUT), "guidance": W.guidance(),
            "size_mismatch": (["error", "resize to fit"], {
                "default": "error",
                "tooltip": "when the input is not the stage's low-res size: error, or resize it "
                           "(area/bicubic) to the stage's input size first"}),
            "dtype": W.dtype(),
        }, "optional": {"tile_size": W.tile_size(), **COMFY_INPUTS, "text": W.text(),
                        "regions": (REGIONS_TYPE, {"tooltip": "CDM Regions of SR stages, boxes "
                                                              "in output pixels: each upsamples "
                                                              "its part of the low-res image "
                                                              "with its own class"})},
            "hidden": W.HIDDEN}

    def upscale(self, stage, lowres, seed, steps, sampler_name, spacing, class_name, guidance,
                size_mismatch, dtype, tile_size=0, sampler=None, sigmas=None, text=None,
                regions=None, unique_id=None, extra_pnginfo=None):
        st = stage.stage
        plan = sampling_plan(st, locals(), record=(extra_pnginfo, unique_id))
        if size_mismatch == "resize to fit":
            lowres = core.fit_condition(st, lowres)
        follow = class_name.strip().lower() == FROM_INPUT and lowres.regions
        if regions or follow:
            B, _, h, w = lowres.image.shape
            f = st.config.factor
            run = dict(canvas=(h * f, w * f), batch=B, seed=seed, lowres=lowres, plan=plan)
            node = "CDM Super-Resolution Stage"
            if not regions:  # "from input" follows the regions that drew the low-res canvas
                regions = core.follow_regions(lowres.regions, st, factor=f)
            with placed_regions(node, st, regions, run=run) as members:
                image = core.super_resolve(st, plan, core.Conditioning.for_upsampling(
                    lowres, regions=members), seed=seed)
            return (to_comfy(image, bridge.intermediate_device()),)
        labels = _labels(st, class_name, lowres.image.shape[0], seed=seed, inherited=lowres.labels)
        with bridge.on_compute_device(st):
            B, C, h, w = lowres.image.shape
            f = st.config.factor
            announce("CDM Super-Resolution Stage", st, plan, shape=(B, C, h * f, w * f))
            image = core.super_resolve(st, plan, core.Conditioning.for_upsampling(
                lowres, labels, text=text), seed=seed)
        return (to_comfy(image, bridge.intermediate_device()),)


class CDMRefiner:
    """Refine an image at its own resolution: noise it to ``strength``, denoise in a few steps."""

    CATEGORY = W.CATEGORY
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("image",)
    OUTPUT_TOOLTIPS = ("the refined images, at the input's size",)
    FUNCTION = "refine"
    DESCRIPTION = ("Refines images at their own resolution: noises them to `strength` of the "
                   "refiner's range and denoises in a few steps (SDEdit-style). Low strength "
                   "keeps the image and cleans artifacts; high strength redraws more.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "stage": W.stage("a refiner stage"),
            "image": W.image("the images to refine, at the refiner's resolution"),
            "strength": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.01,
                                   "tooltip": "how far into the refiner's trained noise range it "
                                              "starts"}),
            "steps": W.steps(10), "seed": W.seed(), "sampler_name": W.sampler(),
            "spacing": W.spacing(),
            "class_name": W.classes("unconditional"), "guidance": W.guidance(),
            "s": W.augmentation_level(0.05, "conditioning augmentation of the refiner's input "
                                            "image in [0, 1] (0 = clean); ignored by refiners "
                                            "trained without it"),
            "dtype": W.dtype(),
        }, "optional": {"tile_size": W.tile_size(), **COMFY_INPUTS, "text": W.text(),
                        "regions": (REGIONS_TYPE, {"tooltip": "CDM Regions of refiner stages, "
                                                              "boxes in the image's pixels: each "
                                                              "refines its part with its own "
                                                              "class"})},
            "hidden": W.HIDDEN}

    # widget order (strength, steps, seed, ...) is frozen: UI workflows store values by position
    def refine(self, stage, image, strength, steps, seed, sampler_name, spacing, class_name,
               guidance, s, dtype, tile_size=0, sampler=None, sigmas=None, text=None,
               regions=None, unique_id=None, extra_pnginfo=None):
        st = stage.stage
        plan = sampling_plan(st, locals(), start="partial",
                             record=(extra_pnginfo, unique_id))
        x = from_comfy(image)
        if regions:
            run = dict(canvas=tuple(x.shape[-2:]), batch=x.shape[0], seed=seed, plan=plan)
            with placed_regions("CDM Refiner", st, regions, run=run) as members:
                out = core.refine(st, plan, core.Conditioning.for_refining(x, s, regions=members),
                                  seed=seed)
            return (to_comfy(out, bridge.intermediate_device()),)
        cond = core.Conditioning.for_refining(x, s, _labels(st, class_name, x.shape[0], seed=seed),
                                              text=text)
        with bridge.on_compute_device(st):
            announce("CDM Refiner", st, plan, shape=x.shape)
            out = core.refine(st, plan, cond, seed=seed)
        return (to_comfy(out, bridge.intermediate_device()),)
