"""Saying a run's cost before it starts: a line in ComfyUI's log, a warning when it is long."""
from __future__ import annotations

import logging

import torch

from ._core import core

LOG = logging.getLogger(__name__)


def announce(node: str, stage, plan, *, shape) -> str:
    """Log (and return) what sampling ``shape`` with ``plan`` will cost on the stage's device:
    ``CDM Super-Resolution Stage: about 19 min on this CPU: 256 tiles x 40 evaluations ...``."""
    dtype = plan.precision if isinstance(plan.precision, torch.dtype) else torch.float32
    try:
        cost = core.cost.run_cost(stage, plan, shape, dtype=dtype)
    except core.CascadeError:  # a size the stage refuses: the run itself says so next
        return ""
    device = "GPU" if stage.device.type == "cuda" else stage.device.type.upper()
    text = f"{node}: {cost.text(device)}"
    if cost.long:
        LOG.warning("%s (a long run: fewer steps, a smaller image or a GPU shorten it)", text)
    else:
        LOG.info(text)
    return text
