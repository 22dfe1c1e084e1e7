"""How much memory a device has free, and a refusal when a job would not fit in it.

Checked before the first allocation, so that an input that cannot fit (a
stranger's stage file describing a billion channels, a 10,000-pixel image, a
batch of a million) is one sentence naming the size and the estimate instead
of a machine swapping for minutes and then a raw ``RuntimeError``.
"""
from __future__ import annotations

import os

import torch

from .errors import CascadeError

FALLBACK_AVAILABLE = 4 * 2 ** 30   # where availability cannot be read
# the longest image side any node takes or makes: 4x the largest released pixel cascade's
# output (IF's 1024) and 8x what a 1024-px base makes; Pillow itself calls 89 Mpx a bomb
MAX_IMAGE_SIDE = 8192


def _meminfo_available() -> int | None:
    """Linux's MemAvailable (free plus reclaimable page cache), in bytes."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def available_bytes(device="cpu") -> int:
    """Free memory of ``device``: CUDA's free memory, or the host's available RAM."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    linux = _meminfo_available()
    if linux is not None:
        return linux
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return FALLBACK_AVAILABLE


def gib(n: float) -> str:
    """``n`` bytes in GiB, for messages."""
    return f"{n / 2 ** 30:.1f} GiB"


def check_fits(what: str, need: float, *, device="cpu", stage: str | None = None):
    """Refuse ``what`` when its estimated ``need`` in bytes exceeds the memory ``device`` has
    available now."""
    have = available_bytes(device)
    if need > have:
        raise CascadeError(f"{what} would need about {gib(need)} of memory", f"at most the "
                           f"{gib(have)} this machine has available", gib(need), stage=stage)


def image_bytes(shape) -> int:
    """Bytes of one float32 tensor of ``shape``."""
    n = 4
    for d in shape:
        n *= int(d)
    return n


def check_image_side(what: str, height: int, width: int, stage: str | None = None):
    """Refuse an image with a side over MAX_IMAGE_SIDE, naming its size."""
    if max(height, width) > MAX_IMAGE_SIDE:
        raise CascadeError(f"{what} is too large", f"sides of at most {MAX_IMAGE_SIDE} pixels",
                           f"{width}x{height}", stage=stage)
