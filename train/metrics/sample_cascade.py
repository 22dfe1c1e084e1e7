"""Draw evaluation samples from a cascade: balanced classes, one seed per image, fixed settings."""
from __future__ import annotations

import time

import numpy as np
import torch

from cascade_core import generate, make_condition, refine, super_resolve, to_uint8

# each stage of the cascade draws its noise from its own block of seeds: image i of stage k uses
# seed + i + k * STAGE_SEED_STRIDE, so no two stages share a stream in runs of fewer images
STAGE_SEED_STRIDE = 10 ** 6


def sample_cascade(base, sr=None, refiner=None, n=1000, batch=100, seed=0, steps=30, sr_steps=30,
                   sampler="dpmpp_2m", spacing="karras", s=0.1, truncated=False, guidance=1.0,
                   refine_strength=0.3, refine_steps=10, dtype="fp32", log=print):
    """(uint8 NHWC images, labels): image i is of class i % num_classes and uses seed + i.
    ``dtype``: the sampling precision (fp32 unless asked: a score should not depend on the
    machine it was computed on)."""
    k = base.config.num_classes
    labels = torch.arange(n) % k if k else torch.full((n,), -1)
    out, t0 = [], time.time()
    for start in range(0, n, batch):
        lab = labels[start:start + batch]
        b = len(lab)
        cls = lab if k else None
        img, cond = generate(base, b, seed=seed + start, steps=steps, sampler=sampler,
                             spacing=spacing, labels=cls, guidance=guidance, dtype=dtype,
                             truncate_s=s if (sr is not None and truncated and s > 0) else None)
        if sr is not None:
            if not (truncated and s > 0):
                cond = make_condition(img, s, seed + start + STAGE_SEED_STRIDE,
                                      schedule=sr.config.augmentation.schedule)
            img = super_resolve(sr, cond, seed=seed + start + 2 * STAGE_SEED_STRIDE,
                                steps=sr_steps, sampler=sampler,
                                spacing=spacing, labels=cls if sr.config.num_classes else None,
                                guidance=guidance, dtype=dtype)
        if refiner is not None:
            img = refine(refiner, img, strength=refine_strength,
                         seed=seed + start + 3 * STAGE_SEED_STRIDE,
                         steps=refine_steps, sampler=sampler, spacing=spacing, dtype=dtype)
        out.append(to_uint8(img))
        if log:
            log(f"  sampled {start + b}/{n} ({time.time() - t0:.0f}s)")
    return np.concatenate(out), labels.numpy()
