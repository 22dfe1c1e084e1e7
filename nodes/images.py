"""Conversions between ComfyUI's IMAGE (float32 BHWC in [0, 1]) and the core's NCHW in [-1, 1]."""
from __future__ import annotations

import numpy as np
import torch
from einops import rearrange
from PIL import Image

from ._core import core


def from_comfy(image: torch.Tensor, what: str = "image") -> torch.Tensor:
    if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[-1] not in (1, 3, 4):
        found = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise core.CascadeError(f"{what} is not a ComfyUI IMAGE",
                                "a (batch, height, width, 3) tensor", found)
    image = image[..., :3] if image.shape[-1] == 4 else image
    if image.shape[-1] == 1:
        image = image.expand(*image.shape[:-1], 3)
    return rearrange(image.float(), "b h w c -> b c h w") * 2 - 1


def to_comfy(x: torch.Tensor, device=None) -> torch.Tensor:
    out = rearrange((x.float().clamp(-1, 1) + 1) / 2, "b c h w -> b h w c").contiguous()
    return out.to(device) if device is not None else out


def to_pil(x: torch.Tensor) -> Image.Image:
    """One CHW image in [-1, 1] as a PIL image."""
    return Image.fromarray(core.to_uint8(x))


def comfy_to_uint8(image: torch.Tensor) -> np.ndarray:
    """One ComfyUI image (HWC in [0, 1]) as uint8 pixels, quantized as ComfyUI's SaveImage does."""
    return (image.clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)


def comfy_from_uint8(pixels: np.ndarray) -> torch.Tensor:
    """uint8 pixels (HWC, or HW for a mask) as float32 in [0, 1], as ComfyUI's LoadImage reads
    them."""
    return torch.from_numpy(np.asarray(pixels, dtype=np.float32) / 255.0)


SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")


def pil_to_comfy(img: Image.Image) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(RGB as HWC float32 in [0, 1], alpha as HW in [0, 1] or None) of a PIL image of any mode.

    Pillow's own conversion is right for the 8-bit modes (1, L, LA, P, RGB, RGBA, CMYK, ...);
    16-bit and 32-bit integer images (I;16, I) and float images (F) are scaled from their own
    range instead of being clipped at 255 (a 16-bit grey would otherwise turn white): I;16 by
    65535, I by 65535 when its values exceed 255 and by 255 otherwise, F kept when within
    [0, 1] and divided by 255 otherwise."""
    if img.mode in SIXTEEN_BIT or img.mode in ("I", "F"):
        values = np.asarray(img, dtype=np.float64)
        if img.mode in SIXTEEN_BIT:
            scale = 65535.0
        elif img.mode == "I":
            scale = 65535.0 if values.max(initial=0) > 255 else 255.0
        else:
            scale = 1.0 if values.max(initial=0) <= 1.0 else 255.0
        grey = torch.from_numpy(np.clip(values / scale, 0, 1).astype(np.float32))
        return grey[..., None].expand(*grey.shape, 3).contiguous(), None
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    alpha = comfy_from_uint8(np.asarray(img.getchannel("A"))) if "A" in img.getbands() else None
    return comfy_from_uint8(np.asarray(img.convert("RGB"))), alpha
