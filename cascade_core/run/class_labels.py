"""Class choices as people type them: names stored in the stage, indices, random, none."""
from __future__ import annotations

import difflib

import torch

from ..base.errors import CascadeError
from ..models.config import StageConfig

UNCONDITIONAL = ("unconditional", "none", "")
ALL_CLASSES = ("all classes", "each")


def parse_classes(cfg: StageConfig, spec, batch: int, seed: int = 0,
                  stage: str | None = None) -> torch.Tensor | None:
    """Labels (B,) long for ``spec``; -1 means unconditional. ``None`` for an unconditional stage.

    ``spec`` is "random", "all classes" (the batch split evenly over the classes, in
    order: a batch of 10 n gives n images of each class, grouped), "unconditional",
    one name or index for the whole batch, or a comma-separated list with one entry
    per image.
    """
    if isinstance(spec, torch.Tensor):
        spec = spec.tolist()
    if isinstance(spec, (list, tuple)):
        items = [str(x) for x in spec]
    else:
        items = [x.strip() for x in str(spec).split(",")]
    if cfg.num_classes == 0:
        if any(x.lower() not in UNCONDITIONAL + ("random", "-1") for x in items):
            raise CascadeError("this stage is unconditional and takes no class", "'unconditional'",
                               spec, stage=stage)
        return None
    if len(items) == 1 and items[0].lower() in ALL_CLASSES:
        return torch.arange(batch) * cfg.num_classes // batch
    if len(items) == 1 and items[0].lower() == "random":
        g = torch.Generator().manual_seed(int(seed))
        return torch.randint(cfg.num_classes, (batch,), generator=g)
    if len(items) not in (1, batch):
        raise CascadeError("one class for the batch or one per image", f"1 or {batch} entries",
                           len(items), stage=stage)
    labels = [_one(cfg, x, stage) for x in items]
    return torch.tensor(labels * batch if len(labels) == 1 else labels, dtype=torch.long)


def _one(cfg: StageConfig, item: str, stage) -> int:
    low = item.lower()
    if low in UNCONDITIONAL or low == "-1":
        return -1
    names = [n.lower() for n in cfg.class_names]
    if low in names:
        return names.index(low)
    if low.lstrip("-").isdigit():
        if not 0 <= int(low) < cfg.num_classes:
            raise CascadeError("class index out of range", f"0..{cfg.num_classes - 1}", int(low),
                               stage=stage)
        return int(low)
    extra = ["random", "all classes", "unconditional"]
    if len(cfg.class_names) > 20:  # ImageNet: name the nearest few, not all 1000
        near = difflib.get_close_matches(low, names, n=5, cutoff=0.5)
        near = [cfg.class_names[names.index(n)] for n in near]
        expected = (f"a class name such as {near}" if near else "one of the stage's class names "
                    "(Stage Info lists them)") + f", an index 0..{cfg.num_classes - 1}, or {extra}"
    else:
        valid = list(cfg.class_names) or [str(i) for i in range(cfg.num_classes)]
        expected = f"one of {valid + extra}"
    raise CascadeError(f"unknown class {item!r}", expected, repr(item), stage=stage)
