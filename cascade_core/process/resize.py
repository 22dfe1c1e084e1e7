"""The one resampling the cascade uses: bicubic with anti-aliasing.

Training makes a stage's low-resolution conditioning with ``downsample`` and
the nodes use the same function when an artist asks for a resize, so an SR
stage never sees a kind of low-res image it was not trained on.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def downsample(x: torch.Tensor, size) -> torch.Tensor:
    """Anti-aliased bicubic resize of NCHW images in [-1, 1] to ``size`` (int or (h, w))."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(x.shape[-2:]) == size:
        return x
    out = F.interpolate(x.float(), size=size, mode="bicubic", antialias=True, align_corners=False)
    return out.clamp(-1, 1).to(x.dtype)
