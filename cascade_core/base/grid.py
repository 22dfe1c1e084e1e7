"""Arrange images into one grid tensor (no file I/O: callers write the PNG)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange


def image_grid(rows: list[torch.Tensor], pad: int = 1, value: float = 1.0) -> torch.Tensor:
    """Stack rows of NCHW images (each row may have its own size) into one CHW image.

    Every image is brought to the largest size with nearest-neighbour upsampling,
    so a low-res input, an output and its target can sit side by side.
    """
    if not rows:
        raise ValueError("image_grid needs at least one row")
    size = max(r.shape[-1] for r in rows), max(r.shape[-2] for r in rows)
    ncol = max(r.shape[0] for r in rows)
    cells = []
    for r in rows:
        r = F.interpolate(r.float(), size=(size[1], size[0]),
                          mode="nearest") if r.shape[-2:] != (size[1], size[0]) else r.float()
        if r.shape[0] < ncol:
            r = torch.cat([r, torch.full((ncol - r.shape[0], *r.shape[1:]), value)])
        cells.append(F.pad(r, (pad, pad, pad, pad), value=value))
    return rearrange(torch.stack(cells), "rows cols c h w -> c (rows h) (cols w)")
