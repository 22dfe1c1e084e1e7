"""Softening JPEG's block grid in training images.

A JPEG-compressed dataset (our CIFAR-10 copy is JPEG at quality 75) carries a
faint step across every 8 px block edge: 1.15x the gradient energy there that
the other seven pixel phases carry, and 1.4x in the smoothest fifth of the
images, where blocking shows most. A stage trained on it learns to draw that
grid keyed to the image's border, and draws one in every tile when it
upscales a large image in tiles.

``soften_block_grid`` spreads each block edge's step over the two pixels on
either side of it by a given fraction. ``deblock`` picks that fraction per
image from the image's own excess at its block edges (none for an image
without one), so smooth images, whose blocking is strongest, are softened
most: at ``amount`` 0.6 our CIFAR-10 training set's grid goes from 1.145 to
0.952, and from 1.395 to 1.020 in its smoothest fifth (``python -m
bench.quality.seams --data ../shared/data/cifar10/train --deblock 0.6``).
Deterministic, so resumed runs stay bit-exact.
"""
from __future__ import annotations

import torch

from ..base.errors import CascadeError

JPEG_BLOCK = 8
SPREAD = (2 / 3, 1 / 3)  # the share of the correction at the first and second pixel from an edge
MAX_STRENGTH = 0.5  # at most this fraction of any edge's step moves (0.75 would flatten it)


def soften_block_grid(x: torch.Tensor, strength, block: int = JPEG_BLOCK) -> torch.Tensor:
    """``x`` (..., H, W) with the step across every multiple of ``block`` along both axes
    reduced: for a step d between the pixels either side of an edge, the pixels k = 0, 1 away
    from it move towards each other by ``strength * SPREAD[k] * d``. ``strength`` is a number
    or a tensor broadcasting against ``x`` (one per image). A new tensor."""
    if block < 2:
        raise CascadeError("block grid softening needs blocks of >= 2 px", ">= 2", block)
    out = x.clone()
    for axis in (-1, -2):
        n = out.shape[axis]
        for edge in range(block, n, block):
            step = out.narrow(axis, edge, 1) - out.narrow(axis, edge - 1, 1)
            for k, share in enumerate(SPREAD):
                if edge - 1 - k < 0 or edge + k >= n:
                    break
                out.narrow(axis, edge - 1 - k, 1).add_(step * strength * share)
                out.narrow(axis, edge + k, 1).sub_(step * strength * share)
    return out


def edge_step_energy(x: torch.Tensor, edges) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image of NCHW ``x``: the mean squared step into the pixel ``edges`` (the same
    positions along both axes; the step from e - 1 to e) and the mean squared step elsewhere,
    each of shape (N,). The seam measure (``analysis.seams``) and ``deblock`` share it."""
    dx = (x[..., :, 1:] - x[..., :, :-1]) ** 2
    dy = (x[..., 1:, :] - x[..., :-1, :]) ** 2
    on_x = torch.zeros(dx.shape[-1], dtype=torch.bool)
    on_y = torch.zeros(dy.shape[-2], dtype=torch.bool)
    for mask in (on_x, on_y):
        mask[[max(e - 1, 0) for e in edges if e - 1 < len(mask)]] = True  # edges inside a side
    on = (dx[..., on_x].mean((1, 2, 3)) + dy[..., on_y, :].mean((1, 2, 3))) / 2
    off = (dx[..., ~on_x].mean((1, 2, 3)) + dy[..., ~on_y, :].mean((1, 2, 3))) / 2
    return on, off


def block_edge_ratio(x: torch.Tensor, block: int = JPEG_BLOCK) -> torch.Tensor:
    """Per image of NCHW ``x``: the mean squared step across block edges (both axes) over the
    mean squared step elsewhere; 1 for an image without a grid. Shape (N,)."""
    if block >= min(x.shape[-2:]):
        raise CascadeError("an image too small for its block grid", f"sides > {block} px",
                           tuple(x.shape[-2:]))
    on, off = edge_step_energy(x, range(block, max(x.shape[-2:]), block))
    return on / off.clamp_min(1e-12)


def deblock(x: torch.Tensor, amount: float, block: int = JPEG_BLOCK) -> torch.Tensor:
    """NCHW ``x`` with each image's block grid softened by ``amount * (1 - 1/sqrt(r))`` of its
    edge steps (at most ``MAX_STRENGTH``), r its ``block_edge_ratio``: 0 leaves images alone;
    0.75 would take a lone step's excess energy out in one pass, but a small image's ratio is
    noisy (some measure a grid they do not have), so less (0.6) flattens a dataset."""
    if not 0 <= amount <= 1:
        raise CascadeError("deblock amount out of range", "0 <= amount <= 1", amount)
    r = block_edge_ratio(x, block)
    strength = (amount * (1 - r.clamp_min(1e-6).rsqrt())).clamp(0, MAX_STRENGTH)
    return soften_block_grid(x, strength.view(-1, 1, 1, 1), block)
