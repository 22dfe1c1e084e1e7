"""Sample grids during training, from the EMA stage.

A base stage shows samples cycling through its classes (a text stage: through its captions);
sr and refiner stages show rows of low-res input, output and target side by side.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from cascade_core import (
    Conditioning,
    SamplingPlan,
    Start,
    TextCond,
    downsample,
    from_uint8,
    generate,
    make_condition,
    refine,
    super_resolve,
)


def _targets(dataset, n: int, size: int):
    src = dataset.source
    idx = torch.linspace(0, len(src) - 1, n).long().tolist()
    imgs = [from_uint8(src.load(i, size)) for i in idx]
    labels = torch.tensor([max(int(src.labels[i]), -1) for i in idx])
    return torch.stack(imgs), labels


def preview_text(stage, dataset, n: int):
    """A text stage's preview prompts: the first ``n`` distinct captions in turn (None for a
    stage without text)."""
    table = getattr(dataset, "text", None)
    if not stage.config.text.width or table is None:
        return None
    distinct = len(table.captions) - 1  # row 0 is the empty caption
    rows = torch.arange(n) % distinct + 1 if distinct else torch.zeros(n, dtype=torch.long)
    tokens = table.tokens.to(stage.device)
    return TextCond(tokens[rows], tokens[[0] * n], table.name)


def preview_rows(stage, dataset, cfg) -> list[torch.Tensor]:
    scfg, n = stage.config, cfg.num_samples
    plan = SamplingPlan(steps=cfg.sample_steps)
    was_training = stage.training
    stage.eval()
    try:
        text = preview_text(stage, dataset, n)
        if scfg.role == "base":
            labels = torch.arange(n) % scfg.num_classes if scfg.num_classes else None
            images, _ = generate(stage, plan, Conditioning.for_base(n, labels, text=text),
                                 seed=0)
            per_row = max(1, min(8, n))
            return list(images.split(per_row))
        target, labels = _targets(dataset, n, scfg.resolution)
        labels = labels if scfg.num_classes else None
        if scfg.role == "sr":
            low = downsample(target, scfg.low_res)
            lowres = make_condition(low, scfg.augmentation.default_s, 0,
                                    schedule=scfg.augmentation.schedule)
            out = super_resolve(stage, plan, Conditioning.for_upsampling(lowres, labels,
                                                                         text=text), seed=0)
        else:
            low = F.interpolate(downsample(target, scfg.resolution // 2), size=target.shape[-2:],
                                mode="bilinear", align_corners=False)
            out = refine(stage, SamplingPlan(steps=cfg.sample_steps, start=Start.partial(1.0)),
                         Conditioning.for_refining(low, labels=labels, text=text), seed=0)
        return [low, out, target]
    finally:
        stage.train(was_training)
