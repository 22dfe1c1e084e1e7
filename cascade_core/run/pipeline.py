"""The cascade in three calls: ``generate`` (base), ``super_resolve`` (SR), ``refine``.

``generate_regions`` runs several of them merged on one canvas (``run.regions``).

Each takes a stage, a ``SamplingPlan`` (how to sample, checked when it was
made), a ``Conditioning`` (what the stage is conditioned on) and a seed (image
``i`` uses ``seed + i``). They check that the stage can play the role, that
the plan's start suits it and that the sizes fit, then hand over to the
strategy of the stage's method (``run.strategies``), which builds the
denoiser and runs the sampler. The ComfyUI nodes, the training previews and
the benchmarks all come through here.
"""
from __future__ import annotations

import torch

from ..base.errors import CascadeError, check_finite
from ..base.memory import check_fits, check_image_side, image_bytes
from ..models.stage import Stage
from .conditioning import Conditioning
from .handover import LowResCond
from .plan import SamplingPlan
from .strategies import strategy_for


def generate(stage: Stage, plan: SamplingPlan, cond: Conditioning, *,
             seed: int) -> tuple[torch.Tensor, LowResCond]:
    """Sample a base stage: (images in [-1, 1], the LowResCond handed to the next stage).

    Under a truncated start (``Start.truncated(s)``) the sampler stops exactly at the
    augmentation level s (CDM Algorithm 2, truncated) and the handover carries z_s; otherwise it
    carries z_0 at level 0, to be augmented by ``make_condition``.
    """
    _expect(stage, plan, role="base", starts=("full", "truncated"))
    _expect_regions(stage, cond)
    if cond.canvas is not None:
        check_size(stage, *cond.canvas, what="canvas")
        check_run_memory(stage, (cond.batch, stage.config.channels, *cond.canvas))
    if plan.classifier is not None and plan.classifier_scale:
        guide_check(stage, plan.classifier)
    return strategy_for(stage).base(stage, plan, cond, seed=seed)


def super_resolve(stage: Stage, plan: SamplingPlan, cond: Conditioning, *,
                  seed: int) -> torch.Tensor:
    """Sample an SR stage conditioned on ``cond.lowres``, at ``factor x`` its size."""
    _expect(stage, plan, role="sr", starts=("full",))
    _expect_regions(stage, cond)
    cfg, low = stage.config, cond.lowres
    if low is None:
        raise CascadeError("an SR stage needs the low-res image it upsamples",
                           "Conditioning.for_upsampling(lowres)", "no low-res image",
                           stage=stage.name)
    B, C, h, w = low.image.shape
    if C != cfg.channels:
        raise CascadeError("conditioning channel count does not match", cfg.channels, C,
                           stage=stage.name)
    check_size(stage, h * cfg.factor, w * cfg.factor, what=f"output of {h}x{w} input")
    check_run_memory(stage, (B, C, h * cfg.factor, w * cfg.factor))
    check_finite("the low-res conditioning", low.image, stage.name)
    if not cfg.aug_input and bool((low.level > 0).any()):
        raise CascadeError("this stage was trained on clean low-res images and has no "
                           "augmentation-level input: it cannot take an augmented (or truncated) "
                           "condition", "a condition at s = 0",
                           f"s = {float(low.level.max()):.3g}", stage=stage.name)
    return strategy_for(stage).upsample(stage, plan, cond, seed=seed)


def refine(stage: Stage, plan: SamplingPlan, cond: Conditioning, *, seed: int) -> torch.Tensor:
    """Refine ``cond.image`` at its own size from the plan's partial start (``Start.partial
    (strength)``: noise it to that fraction of the refiner's trained range, then denoise; one-pass
    refiners blend their output in by the strength). The refiner is also conditioned on the image
    itself, augmented to ``cond.image_s`` (the stage's default when None). Strength 0 returns the
    input."""
    _expect(stage, plan, role="refiner", starts=("partial",))
    _expect_regions(stage, cond)
    cfg, image = stage.config, cond.image
    if image is None:
        raise CascadeError("a refiner needs the image it refines",
                           "Conditioning.for_refining(image)", "no image", stage=stage.name)
    B, C, H, W = image.shape
    if C != cfg.channels:
        raise CascadeError("image channel count does not match", cfg.channels, C, stage=stage.name)
    check_size(stage, H, W, what="input image")
    check_run_memory(stage, image.shape)
    s = cfg.augmentation.default_s if cond.image_s is None else cond.image_s
    if not cfg.aug_input and s > 0:
        raise CascadeError("this refiner was trained on clean inputs and has no "
                           "augmentation-level input", "s = 0", f"s = {s:.3g}", stage=stage.name)
    if plan.start.level == 0:
        return image.clamp(-1, 1)
    return strategy_for(stage).refine(stage, plan, cond, seed=seed)


def generate_regions(regions: list, plan, *, canvas: tuple, batch: int, seed: int,
                     lowres=None):
    """Sample a ``canvas`` (H, W) of ``batch`` images with ``regions`` merged at every
    evaluation, on the first member's noise grid: a base run from noise, or, when the first
    member is an SR stage, a run conditioned on ``lowres`` (a ``LowResCond`` of the canvas at
    1/factor). The images in [-1, 1] on the CPU; image i uses ``seed + i``, as every run does."""
    if not regions:
        raise CascadeError("a merged run needs at least one region", ">= 1 region", 0)
    lead = regions[0].stage
    if lead.config.role == "sr":
        if lowres is None:
            raise CascadeError("an SR region needs the low-res image", "a lowres handover",
                               "none", stage=lead.name)
        cond = Conditioning.for_upsampling(lowres, regions=tuple(regions))
        return super_resolve(lead, plan, cond, seed=seed)
    cond = Conditioning.for_base(batch, regions=tuple(regions), canvas=tuple(canvas))
    return generate(lead, plan, cond, seed=seed)[0]


# full-size tensors a sampling run keeps besides the network's activations (the start, x, the
# noise stream's draw, the estimate, the previous estimate, the upsampled condition, guidance's
# doubled batch)
RUN_COPIES = 8


def check_run_memory(stage: Stage, shape):
    """Refuse an output whose sampling would not fit in memory, before anything is allocated
    (the network's own activations are tiled: ``run.tiling``)."""
    B, C, H, W = shape
    try:
        check_image_side("the output", H, W)
        check_fits(f"sampling {B} image(s) of {H}x{W}", image_bytes(shape) * RUN_COPIES,
                   device=stage.device)
    except CascadeError as e:
        raise CascadeError(str(e), stage=stage.name) from None


def guide_check(stage: Stage, classifier):
    """Refuse a classifier that cannot guide ``stage``: other size, classes or channels."""
    cfg, ccfg = stage.config, classifier.config
    if cfg.num_classes != ccfg.num_classes:
        raise CascadeError("the classifier and the stage disagree on the classes",
                           f"{cfg.num_classes} classes", f"{ccfg.num_classes} (classifier)",
                           stage=stage.name)
    if (cfg.resolution, cfg.channels) != (ccfg.resolution, ccfg.channels):
        raise CascadeError("the classifier was trained at another size than the stage samples",
                           f"{cfg.resolution}px",
                           f"{ccfg.resolution}px (classifier {classifier.name})", stage=stage.name)


def fitting_sizes(stage: Stage, near: int, count: int = 3) -> list[int]:
    """A few image sides near ``near`` that ``stage`` runs on."""
    m = stage.config.size_multiple
    base = max(m, (near // m) * m)
    return sorted({max(m, base + k * m) for k in range(-1, count - 1)})


def check_size(stage: Stage, H: int, W: int, what: str = "image"):
    """Stages run on any size divisible by their network's total downsampling; raise otherwise."""
    m = stage.config.size_multiple
    if H % m or W % m or H < m or W < m:
        raise CascadeError(f"{what} size {H}x{W} does not fit this stage",
                           f"sides that are multiples of {m} (e.g. {fitting_sizes(stage, H)})",
                           f"{H}x{W}", stage=stage.name)


def _expect(stage: Stage, plan: SamplingPlan, *, role: str, starts: tuple):
    if stage.config.role != role:
        raise CascadeError(f"this needs a {role} stage", role,
                           f"a {stage.config.describe()} stage", stage=stage.name)
    if not isinstance(plan, SamplingPlan):
        raise CascadeError("the plan must be a SamplingPlan", "SamplingPlan(...)",
                           type(plan).__name__, stage=stage.name)
    if plan.start.mode not in starts:
        raise CascadeError(f"a {role} stage cannot start {plan.start.mode!r}",
                           f"a start of {list(starts)}", plan.start.mode, stage=stage.name)


def _expect_regions(stage: Stage, cond: Conditioning):
    if cond.regions is not None and stage.config.method != "diffusion":
        raise CascadeError("regions are members of a diffusion run", "a diffusion stage",
                           f"a {stage.config.describe()} stage", stage=stage.name)
