"""Large images in tiles: every model evaluation split into overlapping tiles and blended.

The sampler still walks one shared ``x_t`` with one shared noise stream; only
the network call is tiled (``Denoiser`` calls ``tiled_call``), so tiles cannot
drift apart the way tile-by-tile sampling does. Tiles overlap by a quarter of
their side and are blended with weights that ramp linearly across the overlap
(and stay 1 at the image border), so a pointwise network gives exactly the
untiled result. Each tile sees more than it keeps: on a side it shares with a
neighbour, its outermost ``margin`` pixels (a quarter of the overlap) weigh
nothing, since there a network that cannot see past its input is least sure
of what it draws; the neighbour covers them.

Tiling starts from a **memory estimate** (``estimate_bytes``: activations and,
the usual culprit, full-size attention) against a budget, or from an explicit
tile size; never from the image being larger than the training crop, since
convolutional stages run fine at any size.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..base.errors import CascadeError
from ..base.memory import available_bytes
from .blend import Piece, blend

DEFAULT_BUDGET_FRACTION = 0.5   # of the memory available when sampling starts
# automatic tiles are at most this many times the stage's training resolution: attention costs
# grow with the fourth power of the tile side, and the network has seen that much context
MAX_TILE_FACTOR = 4


@dataclass(frozen=True)
class TilePlan:
    """Tile side and overlap in pixels of the stage's output."""

    tile: int
    overlap: int

    @property
    def margin(self) -> int:
        """The pixels of a shared side that a tile computes but does not keep."""
        return self.overlap // 4


def estimate_bytes(cfg, size: tuple) -> int:
    """A deliberately generous peak-memory estimate of one U-Net evaluation: the activations
    every level keeps for its skip connections, plus the largest attention matrix (PyTorch's
    math kernel materialises heads x S x S floats). ``size``: (batch, height, width)."""
    batch, height, width = size
    u = cfg.unet
    acts = attention = 0
    levels = len(u.widths)
    for level, w in enumerate(u.widths):
        hw = (height >> level) * (width >> level)
        acts += batch * w * hw * 4 * (3 * u.level_blocks[level] + 4)
        if (cfg.resolution >> level) in u.attention_resolutions or level == levels - 1:
            attention = max(attention, 2 * batch * u.heads(w) * hw * hw * 4)
    return acts + attention


def plan_tiles(stage, shape, tiling, budget: int | None = None) -> TilePlan | None:
    """The tiles for an output of ``shape`` (B, C, H, W), or None to run untiled.

    ``tiling``: "auto" (tile when the estimate exceeds the budget, with tiles of at most
    ``MAX_TILE_FACTOR`` x the training resolution that fit it), "off" (a clear error when it
    does) or a tile side in pixels (a multiple of the stage's size multiple).
    """
    cfg = stage.config
    if cfg.method != "diffusion":
        return None
    B, _, H, W = shape
    budget = budget or int(available_bytes(stage.device) * DEFAULT_BUDGET_FRACTION)
    if tiling not in ("auto", "off"):
        return _explicit(cfg, int(tiling), size=(H, W))
    need = estimate_bytes(cfg, (B, H, W))
    if need <= budget:
        return None
    if tiling == "off":
        raise CascadeError(f"a {H}x{W} image is too large for this stage in one piece (about "
                           f"{need / 2 ** 30:.1f} GiB for one evaluation, "
                           f"budget {budget / 2 ** 30:.1f} GiB)",
                           "a smaller image, or tiling 'auto' or a tile size", f"{H}x{W}",
                           stage=stage.name)
    m = cfg.size_multiple
    side = max(m, (min(H, W, MAX_TILE_FACTOR * cfg.resolution) // m) * m)
    while side > m and estimate_bytes(cfg, (B, side, side)) > budget:
        side = max(m, ((side * 3 // 4) // m) * m)
    return TilePlan(side, _overlap(side, m))


def _explicit(cfg, tile: int, *, size: tuple) -> TilePlan | None:
    H, W = size
    m = cfg.size_multiple
    if tile < m or tile % m:
        raise CascadeError("tile size does not fit this stage", f"a multiple of {m}", tile)
    if tile >= H and tile >= W:
        return None
    return TilePlan(tile, _overlap(tile, m))


def _overlap(tile: int, m: int) -> int:
    return max(m, (tile // 4 // m) * m) if tile > m else 0


def starts(size: int, tile: int, overlap: int) -> list[int]:
    """Tile origins along one side: stride ``tile - overlap``, the last flush with the end."""
    if size <= tile:
        return [0]
    stride = tile - overlap
    out = list(range(0, size - tile, stride))
    return out + [size - tile]


def ramp(length: int, overlap: int, *, start: bool, end: bool, margin: int = 0) -> torch.Tensor:
    """1-D blend weights of a tile: where it has a neighbour, 0 over its outermost ``margin``
    pixels, then rising over the rest of the ``overlap``."""
    w = torch.ones(length, dtype=torch.float32)
    if overlap:
        rise = overlap - margin
        up = torch.cat([torch.zeros(margin),
                        torch.arange(1, rise + 1, dtype=torch.float32) / (rise + 1)])
        if start:
            w[:overlap] = torch.minimum(w[:overlap], up)
        if end:
            w[-overlap:] = torch.minimum(w[-overlap:], up.flip(0))
    return w


def tile_pieces(size: tuple, plan: TilePlan) -> list:
    """The overlapping tiles of a (H, W) canvas as blend pieces, their weights ramping across the
    overlap (1 at the canvas border)."""
    H, W = size
    th, tw = min(plan.tile, H), min(plan.tile, W)
    pieces = []
    for y0 in starts(H, th, plan.overlap):
        wy = ramp(th, plan.overlap, start=y0 > 0, end=y0 + th < H, margin=plan.margin)
        for x0 in starts(W, tw, plan.overlap):
            wx = ramp(tw, plan.overlap, start=x0 > 0, end=x0 + tw < W, margin=plan.margin)
            pieces.append(Piece((y0, x0, th, tw), wy[:, None] * wx[None, :]))
    return pieces


def tiled_call(fn, x: torch.Tensor, *, cond: torch.Tensor | None, plan: TilePlan,
               between=None) -> torch.Tensor:
    """``fn(x_tile, cond_tile)`` over overlapping tiles of ``x`` (and of ``cond``, already at
    ``x``'s size), blended into one output: a tiled stage is one member of a parallel run whose
    evaluation is split into pieces (``run.blend``), blending the raw network output."""
    def evaluate(piece):
        window = piece.window()
        return fn(x[window], None if cond is None else cond[window])
    return blend(tile_pieces(x.shape[-2:], plan), evaluate, size=x.shape[-2:], between=between)
