"""Seams: how much stronger an image's gradients are across tile edges than elsewhere.

A tiled evaluation that leaves no seams gives a ratio near 1; a stage that
treats a tile's edge as an image border (trained on whole images) shows a
ratio above it. The tiling tests, the seam benchmark and the model card all
measure with this one function.
"""
from __future__ import annotations

import torch

from ..process.deblock import edge_step_energy
from ..run.tiling import TilePlan, starts


def boundary_energy_ratio(image: torch.Tensor, edges: list[int]) -> float:
    """Mean squared horizontal and vertical differences across the given pixel ``edges`` (the
    same positions along both axes) over the mean elsewhere, for NCHW ``image``: the batch's
    whole energy at the edges over that elsewhere (``deblock`` weighs each image alone)."""
    on, off = edge_step_energy(image, edges)
    return float(on.mean() / off.mean())


def tile_edges(size: int, plan: TilePlan) -> list[int]:
    """The interior positions where tiles of ``plan`` start or end along a side of ``size``."""
    return sorted({e for s in starts(size, plan.tile, plan.overlap) for e in (s, s + plan.tile)
                   if 0 < e < size})
