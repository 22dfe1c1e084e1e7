"""The one conversion between the core's images and 8-bit pixels.

Inside the core images are float channels-first in [-1, 1]; files, metrics
and previews want uint8 channels-last. ``to_uint8`` quantizes exactly as a PNG
writer would (clamp, scale, round); ``from_uint8`` is its inverse on the
256 levels. Both take one image (3 dims) or a batch (4 dims).
"""
from __future__ import annotations

import numpy as np
import torch
from einops import rearrange


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """CHW or NCHW in [-1, 1] -> HWC or NHWC uint8 (values outside [-1, 1] are clamped)."""
    pattern = "c h w -> h w c" if x.ndim == 3 else "b c h w -> b h w c"
    levels = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte()
    return rearrange(levels, pattern).cpu().numpy()


def from_uint8(pixels) -> torch.Tensor:
    """HWC or NHWC uint8 (numpy array or tensor) -> CHW or NCHW float32 in [-1, 1]."""
    if isinstance(pixels, torch.Tensor):
        t = pixels.detach().to("cpu", torch.uint8, copy=True)
    else:
        t = torch.from_numpy(np.array(pixels, dtype=np.uint8, copy=True))
    pattern = "h w c -> c h w" if t.ndim == 3 else "b h w c -> b c h w"
    return rearrange(t, pattern).float() / 127.5 - 1
