"""Per-pixel weighted blending of pieces evaluated on boxes of one canvas: the one mechanism under
tiles (pieces of one network evaluation, weights that ramp across the overlap) and under the
members of a parallel run (clean-image estimates, weight x mask).

``blend`` places ``evaluate(piece)`` at each piece's box, multiplied by the piece's weights, and
divides by the summed weights: where one piece covers a pixel with weight 1 the value passes
through exactly (x * 1 / 1), which keeps a one-piece blend bit-identical to no blend at all.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Piece:
    """A box (top, left, height, width) of the canvas and its blend weights (height, width)."""

    box: tuple
    weight: torch.Tensor

    def window(self) -> tuple:
        """The slices that cut this piece out of a (..., H, W) tensor."""
        top, left, h, w = self.box
        return (..., slice(top, top + h), slice(left, left + w))


def blend(pieces: list, evaluate: Callable, *, size: tuple,
          between: Callable | None = None) -> torch.Tensor:
    """sum_i w_i * evaluate(piece_i) / sum_i w_i over a canvas of ``size`` (H, W), in float32 on
    the evaluations' device. ``between()`` runs before every piece but the first (an interrupt
    check lands inside one evaluation)."""
    H, W = size
    out = weight = None
    for i, piece in enumerate(pieces):
        if i and between is not None:
            between()
        value = evaluate(piece).float()
        w = piece.weight.to(value.device)
        if out is None:
            out = value.new_zeros((*value.shape[:-2], H, W))
            weight = value.new_zeros((H, W))
        region = piece.window()
        out[region] += value * w
        weight[region[1:]] += w
    return out / weight
