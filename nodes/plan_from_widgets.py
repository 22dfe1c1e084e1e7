"""The one helper that turns a sampling node's widgets into the engine's ``SamplingPlan``.

Every sampling node (BaseSampler, SuperResStage, Refiner, Sweep) resolves its
widgets here, once: the precision (checked against the compute device before
any work, and recorded for the PNG), ComfyUI's SAMPLER and SIGMAS inputs when
wired, the tile size, the start (truncated base, partial refiner), classifier
guidance and a progress bar with previews and the interrupt check. The plan
then travels unchanged through the pipeline to the sampler.
"""
from __future__ import annotations

import logging

import torch

from . import comfy_bridge as bridge
from . import widgets as W
from ._core import core
from .comfy_samplers import comfy_sampler, warn_low_start

log = logging.getLogger("cascade_core")
# which widget gives the start level: a base stage's truncation s, a refiner's strength
START_WIDGETS = {"full": None, "truncated": "truncate_s", "partial": "strength"}


def sampling_plan(stage, widgets: dict, *, start: str = "full", record=None,
                  progress: bool = True):
    """The plan of ``widgets`` (the node's keyword values: ``seed``, ``steps``,
    ``sampler_name``, ``spacing``, ``guidance``, ``dtype`` and, where the node has them,
    ``sampler``, ``sigmas``, ``tile_size``, ``classifier``, ``classifier_scale``, and the widget
    ``START_WIDGETS[start]``) for ``stage``. ``record``: the node's ``(extra_pnginfo,
    unique_id)``, where the precision is noted; ``progress``: give the plan a progress bar."""
    precision = W.torch_dtype(widgets["dtype"], record,  # before any work: bad = error
                              weights=stage.dtype)
    seed = widgets["seed"]
    steps, name, spacing = as_the_stage_says(stage, widgets)
    sampler = widgets.get("sampler")
    classifier, sigmas = widgets.get("classifier"), widgets.get("sigmas")
    total = steps if sigmas is None else torch.as_tensor(sigmas).numel() - 1
    try:
        level = widgets[START_WIDGETS[start]] if START_WIDGETS[start] else 0.0
        begin = {"full": core.Start, "truncated": core.Start.truncated,
                 "partial": core.Start.partial}[start]
        plan = core.SamplingPlan(
            sampler=name if sampler is None else comfy_sampler(sampler, stage, seed),
            steps=steps, spacing=spacing, sigmas=sigmas,
            start=begin(level) if start != "full" else begin(),
            guidance=widgets["guidance"], precision=precision,
            threshold=core.default_threshold(stage.config),
            tiling=W.tiling(widgets.get("tile_size", 0)),
            classifier=None if classifier is None else classifier.stage,
            classifier_scale=widgets.get("classifier_scale", 0.0) if classifier else 0.0,
            callback=bridge.Progress(total) if progress else None,
            interrupt=bridge.check_interrupt)
    except core.CascadeError as e:
        if e.stage:
            raise
        raise core.CascadeError(str(e), stage=stage.name) from None
    if plan.sigmas is not None:
        warn_low_start(stage, plan.sigmas)
    return plan


def as_the_stage_says(stage, widgets: dict) -> tuple:
    """(steps, sampler, spacing) of the widgets; steps 0 means as the stage says: a distilled
    stage's recorded sampler, steps and spacing (``StageConfig.sampling``), else
    ``SamplingConfig.UNRECORDED_STEPS`` with the widgets' sampler. Other settings on a distilled
    stage are sampled as asked, with a warning."""
    made = stage.config.sampling
    steps, name, spacing = made.resolve(widgets["steps"], widgets["sampler_name"],
                                        widgets["spacing"])
    if made.departs(steps, name, spacing):
        log.warning("[%s] this stage was distilled for %s with %d steps and %s spacing; it samples "
                    "%s with %d steps and %s spacing as asked, most likely worse (steps 0: as "
                    "the stage says)", stage.name, made.sampler, made.steps, made.spacing, name,
                    steps, spacing)
    return steps, name, spacing
