"""Exponential moving average of a model's weights, with a warmup for short runs."""
from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """``decay_t = min(decay, (1 + n) / (warmup + n))``: averages quickly at first, so a
    CPU run of a few thousand steps is not dominated by its random initialisation."""

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: float = 10.0):
        if not 0 <= decay < 1:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay, self.warmup, self.updates = float(decay), float(warmup), 0

    def current_decay(self) -> float:
        """The decay the next update uses."""
        n = self.updates
        return min(self.decay, (1 + n) / (self.warmup + n)) if self.warmup > 0 else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module):
        """Move the average towards ``model``'s parameters; copy its buffers."""
        d = self.current_decay()
        ema_p = list(self.model.parameters())
        src_p = list(model.parameters())
        torch._foreach_lerp_(ema_p, [p.detach() for p in src_p], 1 - d)
        for eb, b in zip(self.model.buffers(), model.buffers()):
            eb.copy_(b)
        self.updates += 1

    def state_dict(self) -> dict:
        """The averaged weights and the update count, for training states."""
        return {"model": self.model.state_dict(), "updates": self.updates,
                "decay": self.decay, "warmup": self.warmup}

    def load_state_dict(self, state: dict):
        """Restore what ``state_dict`` returned."""
        self.model.load_state_dict(state["model"])
        self.updates = int(state["updates"])
