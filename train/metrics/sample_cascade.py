"""Draw evaluation samples from a cascade: balanced classes, one seed per image, fixed settings."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from cascade_core import (
    Conditioning,
    SamplingPlan,
    Stage,
    Start,
    TextCond,
    generate,
    make_condition,
    refine,
    super_resolve,
    to_uint8,
)

# each stage of the cascade draws its noise from its own block of seeds: image i of stage k uses
# seed + i + k * STAGE_SEED_STRIDE, so no two stages share a stream in runs of fewer images
STAGE_SEED_STRIDE = 10 ** 6


class Cascade(NamedTuple):
    """The stages sampled in order: a base stage, optionally an SR stage and a refiner."""

    base: Stage
    sr: Stage | None = None
    refiner: Stage | None = None


@dataclass(frozen=True)
class CascadeSettings:
    """How an evaluation samples a cascade: steps per stage (0: as the stage says, a distilled
    stage's own sampling), sampler and spacing (the SR stage's own where given), augmentation
    level ``s`` (truncated or re-noised), guidance, refiner strength, precision (fp32 unless
    asked: a score should not depend on the machine it was computed on) and batch size."""

    steps: int = 30
    sr_steps: int = 30
    sampler: str = "dpmpp_2m"
    spacing: str = "karras"
    sr_sampler: str = ""
    sr_spacing: str = ""
    s: float = 0.1
    truncated: bool = False
    guidance: float = 1.0
    refine_strength: float = 0.3
    refine_steps: int = 10
    dtype: str = "fp32"
    batch: int = 100

    def plan(self, stage: Stage, steps: int, start: Start | None = None) -> SamplingPlan:
        """The sampling plan of ``stage`` with ``steps`` steps (0: as the stage says)."""
        sr = stage.config.role == "sr"
        asked = (self.sr_sampler or self.sampler, self.sr_spacing or self.spacing) if sr else (
            self.sampler, self.spacing)
        steps, sampler, spacing = stage.config.sampling.resolve(steps, *asked)
        return SamplingPlan(sampler=sampler, steps=steps, spacing=spacing,
                            start=start or Start(), guidance=self.guidance,
                            precision=self.dtype)

    def refiner_plan(self, refiner: Stage) -> SamplingPlan:
        """The refiner's plan: ``refine_steps`` over the part of its schedule it re-noises to,
        ``refine_strength`` (a strength outside [0, 1] is refused here, before any sampling)."""
        return self.plan(refiner, self.refine_steps, Start.partial(self.refine_strength))


@dataclass(frozen=True)
class Prompts:
    """How a text stage is prompted in an evaluation: ``template`` filled with the name of each
    image's class (of ``class_names``), encoded by ``encoder`` (a ``PromptEncoder``)."""

    encoder: object
    template: str
    class_names: tuple

    def __call__(self, labels: torch.Tensor) -> TextCond:
        """The prompts of a batch of classes, with the empty prompt for guidance."""
        return self.encoder.encode([self.template.format(self.class_names[int(c)])
                                    for c in labels])


def sample_cascade(cascade: Cascade, n: int, settings: CascadeSettings = CascadeSettings(),
                   seed: int = 0, log=print, prompts: Prompts | None = None):
    """(uint8 NHWC images, labels): image i is of class i % num_classes (a text base stage:
    prompted by ``prompts`` with that class's name) and uses seed + i."""
    base, sr, refiner = cascade
    k = len(prompts.class_names) if prompts is not None else base.config.num_classes
    labels = torch.arange(n) % k if k else torch.full((n,), -1)
    truncated = sr is not None and settings.truncated and settings.s > 0
    out, t0 = [], time.time()
    for start in range(0, n, settings.batch):
        lab = labels[start:start + settings.batch]
        cls = lab if k and base.config.num_classes else None
        text = prompts(lab) if prompts is not None else None
        plan = settings.plan(base, settings.steps,
                             Start.truncated(settings.s) if truncated else None)
        img, lowres = generate(base, plan, Conditioning.for_base(len(lab), cls, text=text),
                               seed=seed + start)
        if sr is not None:
            if not truncated:
                lowres = make_condition(img, settings.s, seed + start + STAGE_SEED_STRIDE,
                                        schedule=sr.config.augmentation.schedule)
            cond = Conditioning.for_upsampling(lowres, lab if k and sr.config.num_classes
                                               else None)
            img = super_resolve(sr, settings.plan(sr, settings.sr_steps), cond,
                                seed=seed + start + 2 * STAGE_SEED_STRIDE)
        if refiner is not None:
            img = refine(refiner, settings.refiner_plan(refiner), Conditioning.for_refining(img),
                         seed=seed + start + 3 * STAGE_SEED_STRIDE)
        out.append(to_uint8(img))
        if log:
            log(f"  sampled {start + len(lab)}/{n} ({time.time() - t0:.0f}s)")
    return np.concatenate(out), labels.numpy()
