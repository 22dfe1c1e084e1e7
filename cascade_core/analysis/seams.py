"""Seams: how much stronger an image's gradients are across tile edges than elsewhere.

A tiled evaluation that leaves no seams gives a ratio near 1; a stage that
treats a tile's edge as an image border (trained on whole images) shows a
ratio above it. The tiling tests, the seam benchmark and the model card all
measure with this one function.
"""
from __future__ import annotations

import torch

from ..run.tiling import TilePlan, starts


def boundary_energy_ratio(image: torch.Tensor, edges: list[int]) -> float:
    """Mean squared horizontal and vertical differences across the given pixel ``edges`` (the
    same positions along both axes) over the mean elsewhere, for NCHW ``image``."""
    dx = (image[..., :, 1:] - image[..., :, :-1]) ** 2  # difference between column c and c+1
    dy = (image[..., 1:, :] - image[..., :-1, :]) ** 2
    at = torch.zeros(dx.shape[-1], dtype=torch.bool)
    for e in edges:
        at[max(e - 1, 0)] = True  # the step into the tile edge e
    on = (dx[..., at].mean() + dy[..., at, :].mean()) / 2
    off = (dx[..., ~at].mean() + dy[..., ~at, :].mean()) / 2
    return float(on / off)


def tile_edges(size: int, plan: TilePlan) -> list[int]:
    """The interior positions where tiles of ``plan`` start or end along a side of ``size``."""
    return sorted({e for s in starts(size, plan.tile, plan.overlap) for e in (s, s + plan.tile)
                   if 0 < e < size})
