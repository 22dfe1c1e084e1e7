"""The cascade in three calls: ``generate`` (base), ``super_resolve`` (SR), ``refine``.

These are the functions the ComfyUI nodes, the training previews and the
benchmarks call; each takes a seed (one stream per image), a sampler name, a
step count and spacing, and an optional per-step callback. They check the
stage's role and the sizes, then hand over to the stage, whose kind
(``cascade_core.kinds``) knows how to sample.
"""
from __future__ import annotations

import torch

from . import kinds  # noqa: F401  (registers the stage kinds)
from .errors import CascadeError, check_finite, check_range
from .handover import LowResCond, convert_level, fit_condition, make_condition
from .models.stage import Stage
from .sampling import SamplingPlan, run_sampler


def generate(stage: Stage, batch: int, *, seed: int, steps=30, sampler="dpmpp_2m", spacing="karras",
             labels=None, guidance=1.0, truncate_s: float | None = None, aug_schedule="cosine",
             callback=None, dtype=torch.float32, classifier=None, classifier_scale: float = 0.0,
             sigmas=None, **options):
    """Sample a base stage. Returns (images in [-1, 1], LowResCond for the next stage).

    With ``truncate_s`` the sampler stops exactly at the augmentation level s
    (Algorithm 2, truncated) and the handover carries z_s; otherwise it carries
    z_0 at level 0, to be augmented by ``make_condition``. A noisy ``classifier`` guides the
    sampler at ``classifier_scale`` (ADM-G; see ``guide_check``). ``sigmas`` (descending, to 0)
    replaces the grid of ``steps`` and ``spacing``; ``sampler`` may also be a function with the
    samplers' signature (ComfyUI's SAMPLER through ``nodes.comfy_samplers``).
    """
    _expect_role(stage, "base")
    check_finite("guidance", guidance, stage.name)
    s = 0.0 if truncate_s is None else check_range("truncation level s", truncate_s, 0.0, hi=1.0,
                                                   stage=stage.name)
    if s >= 1.0:
        raise CascadeError("truncate_s = 1 would hand the next stage pure noise: the base stage "
                           "would do nothing", "0 <= truncate_s < 1 (0: full sampling)", s,
                           stage=stage.name)
    if classifier is not None and classifier_scale:
        guide_check(stage, classifier, scale=classifier_scale)
    plan = SamplingPlan(steps=steps, sampler=sampler, spacing=spacing, guidance=guidance,
                        callback=callback, dtype=dtype, options=options, classifier=classifier,
                        classifier_scale=float(classifier_scale), sigmas=sigmas)
    return stage.sample_base(batch=batch, seed=seed, plan=plan, labels=labels, truncate_s=s,
                             aug_schedule=aug_schedule)


def super_resolve(stage: Stage, cond: LowResCond, *, seed: int, steps=30, sampler="dpmpp_2m",
                  spacing="karras", labels=None, guidance=1.0, callback=None, dtype=torch.float32,
                  tiling="auto", sigmas=None, **options):
    """Sample an SR stage conditioned on ``cond`` at output size ``factor x`` the input.

    ``tiling``: "auto" splits each evaluation into blended tiles when one piece would not fit in
    memory, "off" refuses such an image, a number is the tile side (``cascade_core.tiling``)."""
    _expect_role(stage, "sr")
    cfg = stage.config
    B, C, h, w = cond.image.shape
    if C != cfg.channels:
        raise CascadeError("conditioning channel count does not match", cfg.channels, C,
                           stage=stage.name)
    check_size(stage, h * cfg.factor, w * cfg.factor, what=f"output of {h}x{w} input")
    check_finite("the low-res conditioning", cond.image, stage.name)
    check_finite("guidance", guidance, stage.name)
    if not cfg.aug_input and bool((cond.level > 0).any()):
        raise CascadeError("this stage was trained on clean low-res images and has no "
                           "augmentation-level input: it cannot take an augmented (or truncated) "
                           "condition", "a condition at s = 0",
                           f"s = {float(cond.level.max()):.3g}", stage=stage.name)
    plan = SamplingPlan(steps=steps, sampler=sampler, spacing=spacing, guidance=guidance,
                        callback=callback, dtype=dtype, options=options, tiling=tiling,
                        sigmas=sigmas)
    return stage.sample_upsample(cond, seed=seed, plan=plan, labels=labels)


def refine(stage: Stage, image: torch.Tensor, *, strength: float, seed: int, steps=10,
           sampler="dpmpp_2m",
           spacing="karras", labels=None, guidance=1.0, s: float | None = None, callback=None,
           dtype=torch.float32, tiling="auto", sigmas=None, **options):
    """Refine ``image`` at its own size: noise it to ``strength`` of the refiner's trained
    range, then denoise it (one-pass refiners blend their output in by ``strength``).

    The refiner is also conditioned on the image itself, augmented to level
    ``s`` (the stage's default when None). Strength 0 returns the input.
    """
    _expect_role(stage, "refiner")
    cfg = stage.config
    strength = check_range("refiner strength", strength, 0.0, hi=1.0, stage=stage.name)
    B, C, H, W = image.shape
    if C != cfg.channels:
        raise CascadeError("image channel count does not match", cfg.channels, C, stage=stage.name)
    check_size(stage, H, W, what="input image")
    check_finite("the image to refine", image, stage.name)
    check_finite("guidance", guidance, stage.name)
    if strength == 0 or int(steps) < 1:
        return image.clamp(-1, 1)
    plan = SamplingPlan(steps=steps, sampler=sampler, spacing=spacing, guidance=guidance,
                        callback=callback, dtype=dtype, options=options, tiling=tiling,
                        sigmas=sigmas)
    return stage.sample_refine(image, strength=strength, seed=seed, plan=plan, labels=labels, s=s)


def guide_check(stage: Stage, classifier, *, scale: float):
    """Refuse a classifier that cannot guide ``stage``: other size, classes or channels."""
    check_finite("classifier scale", scale, stage.name)
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


def _expect_role(stage: Stage, role: str):
    if stage.config.role != role:
        raise CascadeError(f"this needs a {role} stage", role,
                           f"a {stage.config.describe()} stage", stage=stage.name)


__all__ = ["LowResCond", "SamplingPlan", "make_condition", "generate", "super_resolve", "refine",
           "run_sampler", "convert_level", "check_size", "fit_condition", "guide_check"]
