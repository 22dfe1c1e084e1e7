"""Which stage holds the shipped cascade back? Each stage scored on its own and in the cascade.

    python -m bench.quality.stage_gaps --num 1000   # model card protocol -> results/stage_gaps.json
    python -m bench.quality.stage_gaps --quick      # seconds: tiny numbers, nothing saved

At 32 px against the model card's reference (2,000 CIFAR-10 test images, KID
on Inception features; class agreement by our classifier), for real training
images (``--num``, class-balanced) and for samples:

* ``real 32px``: the real images themselves (the ceiling);
* ``real 16px, bicubic``: real images downsampled as in training and upsampled
  bicubically (the floor: no SR at all);
* ``real 16px, SR``: the SR stage on the same 16 px images (s = 0.1, 30 steps);
* ``cascade``: base + SR, the model card's settings (30 + 30 steps, s = 0.1);
* each 16 px row again through the refiner (strength 0.3, 10 steps).

The gap between two rows is what one stage costs: bicubic -> SR is what the SR
stage adds over no SR; SR on real -> cascade is what the base stage loses.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

import cascade_core as cc
from train.eval import CACHE_DIR, EvalOptions, evaluate
from train.metrics.sample_cascade import Cascade, CascadeSettings, sample_cascade

from ..common import save

WEIGHTS = "weights/cifar10-{}.safetensors"


def real_images(path: str, n: int, seed: int = 0):
    """``n`` class-balanced real images (uint8 NHWC, 32 px) and their labels."""
    from train.data import ImageSource
    src = ImageSource(path)
    rng = np.random.default_rng(seed)
    k = max(1, src.num_classes)
    idx = np.concatenate([rng.choice(np.flatnonzero(src.labels == c), n // k, replace=False)
                          for c in range(k)])
    return np.stack([src.load(int(i), 32) for i in idx]), src.labels[idx]


def sr_on_real(sr, real: np.ndarray, labels: np.ndarray, *, steps: int, batch: int = 250):
    """The SR stage alone on real 16 px images (downsampled as in training, s = 0.1): 32 px
    images in [-1, 1], NCHW on the CPU."""
    x = cc.downsample(cc.from_uint8(real), 16).to(sr.device)
    lab = torch.as_tensor(labels, device=sr.device)
    out = []
    for i in range(0, len(x), batch):
        cond = cc.make_condition(x[i:i + batch], 0.1, seed=10 ** 6 + i,
                                 schedule=sr.config.augmentation.schedule)
        out.append(cc.super_resolve(sr, cc.SamplingPlan(steps=steps),
                                    cc.Conditioning.for_upsampling(cond, lab[i:i + batch]),
                                    seed=2 * 10 ** 6 + i))
    return torch.cat(out)


def _batches(x: torch.Tensor, fn, batch: int = 100) -> torch.Tensor:
    return torch.cat([fn(x[i:i + batch], i) for i in range(0, len(x), batch)])


def rows(stages: dict, real: np.ndarray, labels: np.ndarray, steps: int) -> dict:
    """The images of every row, uint8 NHWC."""
    x32 = cc.from_uint8(real)
    low = cc.downsample(x32, 16)

    def refine(chunk, i):
        plan = cc.SamplingPlan(steps=max(1, steps // 3), start=cc.Start.partial(0.3))
        return cc.refine(stages["refiner"], plan, cc.Conditioning.for_refining(chunk),
                         seed=3 * 10 ** 6 + i)

    bicubic = F.interpolate(low, size=32, mode="bicubic", align_corners=False).clamp(-1, 1)
    out = {"real 32px": x32, "real 16px, bicubic": bicubic, "real 16px, SR":
           sr_on_real(stages["sr"], real, labels, steps=steps, batch=100)}
    cascade, _ = sample_cascade(Cascade(stages["base"], stages["sr"]), len(real),
                                CascadeSettings(steps=steps, sr_steps=steps, s=0.1), log=None)
    out["cascade"] = cc.from_uint8(cascade)
    for name in ("real 16px, bicubic", "real 16px, SR", "cascade"):
        out[name + " + refiner"] = _batches(out[name], refine)
    return {name: cc.to_uint8(x) for name, x in out.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.quality.stage_gaps", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data/cifar10/train")
    p.add_argument("--ref", default="../shared/data/cifar10/test")
    p.add_argument("--ref-num", type=int, default=2000)
    p.add_argument("--num", type=int, default=1000)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.num, args.ref_num, args.steps = 20, 40, 2
    stages = {k: cc.load_stage(WEIGHTS.format(v)) for k, v in
              (("base", "base16"), ("sr", "sr16to32"), ("refiner", "refiner32"))}
    real, labels = real_images(args.data, args.num)
    t0 = time.time()
    images = rows(stages, real, labels, steps=args.steps)
    metrics = ["kid", "acc"] if not args.quick else ["swd", "acc"]
    table = {}
    for name, imgs in images.items():
        lab = labels if name != "cascade" and "cascade" not in name else np.arange(len(imgs)) % 10
        # the reference's Inception features are computed once and cached, not once per row
        table[name] = evaluate(imgs, lab, args.ref, options=EvalOptions(
            metrics=tuple(metrics), ref_num=args.ref_num, cache_dir=CACHE_DIR,
            log=lambda *a: None))
        kid = table[name].get("kid")
        print(f"{name:<28} KID {kid if kid is None else round(kid, 4)} "
              f"± {table[name].get('kid_std', 0):.4f}  class agreement "
              f"{table[name]['class_accuracy']:.3f}", flush=True)
    if not args.quick:
        save("stage_gaps", {"num": args.num, "ref_num": args.ref_num, "steps": args.steps,
                            "seconds": round(time.time() - t0), "rows": table})
    return 0


if __name__ == "__main__":
    sys.exit(main())
