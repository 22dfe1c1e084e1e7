"""What a stage config would cost before it is built: its parameters, counted on the meta device.

Building a network on the meta device allocates no memory, so even a stranger's
config describing trillions of parameters is counted in a fraction of a second;
the loaders and the training scripts refuse what would not fit
(``base.memory.check_fits``) before they allocate anything.
"""
from __future__ import annotations

import torch

from .config import StageConfig
from .stage import Stage


def parameter_count(config: StageConfig) -> int:
    """The number of parameters of the stage ``config`` describes."""
    with torch.device("meta"):
        stage = Stage(config)
    return sum(p.numel() for p in stage.parameters())
