"""Draw evaluation samples from a cascade: balanced classes, one seed per image, fixed settings."""
from __future__ import annotations

import time

import numpy as np
import torch

from cascade_core import generate, make_condition, refine, super_resolve


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """NCHW in [-1, 1] -> NHWC uint8, the quantization a PNG applies."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def from_uint8(images: np.ndarray) -> torch.Tensor:
    """NHWC uint8 -> NCHW float in [-1, 1], the inverse of ``to_uint8``."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1


def sample_cascade(base, sr=None, refiner=None, n=1000, batch=100, seed=0, steps=30, sr_steps=30,
                   sampler="dpmpp_2m", spacing="karras", s=0.1, truncated=False, guidance=1.0,
                   refine_strength=0.3, refine_steps=10, log=print):
    """(uint8 NHWC images, labels): image i is of class i % num_classes and uses seed + i."""
    k = base.config.num_classes
    labels = torch.arange(n) % k if k else torch.full((n,), -1)
    out, t0 = [], time.time()
    for start in range(0, n, batch):
        lab = labels[start:start + batch]
        b = len(lab)
        cls = lab if k else None
        img, cond = generate(base, b, seed + start, steps, sampler, spacing, cls, guidance,
                             truncate_s=s if (sr is not None and truncated and s > 0) else None)
        if sr is not None:
            if not (truncated and s > 0):
                cond = make_condition(img, s, seed + start + 10 ** 6, sr.config.augmentation.schedule)
            img = super_resolve(sr, cond, seed + start + 2 * 10 ** 6, sr_steps, sampler, spacing,
                                cls if sr.config.num_classes else None, guidance)
        if refiner is not None:
            img = refine(refiner, img, refine_strength, seed + start + 3 * 10 ** 6, refine_steps, sampler, spacing)
        out.append(to_uint8(img))
        if log:
            log(f"  sampled {start + b}/{n} ({time.time() - t0:.0f}s)")
    return np.concatenate(out), labels.numpy()
