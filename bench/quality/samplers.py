"""Sample quality versus model evaluations for each sampler, on a base stage.

    python -m bench.quality.samplers --stage weights/cifar10-base16.safetensors --num 1000 --kid
    python -m bench.quality.samplers --num 500 --kid --ddpm-steps 100,250,500   # ~1 h on one core
    python -m bench.quality.samplers --quick     # a random tiny stage, seconds (CI)

Ancestral DDPM at many steps against DDIM, Heun and DPM-Solver++(2M) at 10,
20 and 50 steps, all from the same seeds and classes. Quality is the sliced
Wasserstein distance to the real test split (no network weights) and, with
--kid, KID on Inception features. Writes bench/results/samplers.json and a plot.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

import cascade_core as cc
from cascade_core import from_uint8, to_uint8
from cascade_core.process.samplers import evaluations
from train.eval import EvalOptions, load_images, reference_features
from train.metrics.scores import kid, sliced_wasserstein

from ..common import RESULTS, pyplot, save

FAST = [(s, n, "karras") for s in ("ddim", "heun", "dpmpp_2m") for n in (10, 20, 50)]
QUICK_GRID = [("ddpm", 20, "uniform"), ("ddim", 5, "karras"), ("heun", 5, "karras"),
              ("dpmpp_2m", 5, "karras")]


def draw(stage, sampler, steps, spacing, n, batch, seed, guidance):
    k = stage.config.num_classes
    out = []
    for start in range(0, n, batch):
        b = min(batch, n - start)
        labels = (torch.arange(start, start + b) % k) if k else None
        plan = cc.SamplingPlan(steps=steps, sampler=sampler, spacing=spacing, guidance=guidance)
        img, _ = cc.generate(stage, plan, cc.Conditioning.for_base(b, labels), seed=seed + start)
        out.append(img)
    return torch.cat(out)


def plot(rows, path):
    plt = pyplot()
    if plt is None:
        return
    metric = "kid" if "kid" in rows[0] else "swd"
    fig, ax = plt.subplots(figsize=(6, 4))
    for name in dict.fromkeys(r["sampler"] for r in rows):
        rs = sorted((r for r in rows if r["sampler"] == name), key=lambda r: r["nfe"])
        ax.errorbar([r["nfe"] for r in rs], [r[metric] for r in rs],
                    yerr=[r.get("kid_std", 0) for r in rs], fmt="o-", capsize=3, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("model evaluations per image")
    ax.set_ylabel("KID (± std over subsets)" if metric == "kid" else "SWD (mean over levels, x1e3)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.quality.samplers", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stage", default="weights/cifar10-base16.safetensors")
    p.add_argument("--ref", default="../shared/data/cifar10/test")
    p.add_argument("--num", type=int, default=1000)
    p.add_argument("--batch", type=int, default=250)
    p.add_argument("--guidance", type=float, default=1.0)
    p.add_argument("--kid", action="store_true", help="also KID (needs the Inception file; slower)")
    p.add_argument("--ddpm-steps", default="100,250,1000",
                   help="step counts of ancestral DDPM (uniform grid)")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        torch.manual_seed(0)
        unet = cc.UNetConfig(8, (1, 2), 1, attention_resolutions=())
        stage = cc.Stage(cc.StageConfig(role="base", resolution=8, num_classes=2, unet=unet)).eval()
        ref = torch.rand(32, 3, 8, 8) * 2 - 1
        grid, n = QUICK_GRID, 16
    else:
        stage = cc.load_stage(args.stage, dtype="fp32")
        ref_u8, _ = load_images(args.ref, stage.config.resolution, limit=max(args.num, 2000))
        ref = from_uint8(ref_u8)
        grid, n = [("ddpm", int(v), "uniform") for v in args.ddpm_steps.split(",")] + FAST, args.num
    net = ref_feats = None
    if args.kid and not args.quick:
        from train.metrics.inception import InceptionFeatures
        net = InceptionFeatures()
        ref_feats, _ = reference_features(net, args.ref, size=stage.config.resolution,
                                          options=EvalOptions(ref_num=max(args.num, 2000),
                                                              cache_dir=RESULTS.parent / "cache"))
    rows = []
    for sampler, steps, spacing in grid:
        t0 = time.time()
        imgs = draw(stage, sampler, steps, spacing=spacing, n=n, batch=args.batch, seed=0,
                    guidance=args.guidance)
        row = {"sampler": sampler, "steps": steps, "spacing": spacing,
               "nfe": evaluations(sampler, steps), "seconds": round(time.time() - t0, 2)}
        quantized = from_uint8(to_uint8(imgs))
        row["swd"] = float(np.mean(sliced_wasserstein(quantized, ref[: len(quantized)])))
        if net is not None:
            row["kid"], row["kid_std"] = kid(net(to_uint8(imgs)), ref_feats)
        rows.append(row)
        print(f"{sampler:>9} {steps:>4} steps ({spacing:>8}): NFE {row['nfe']:>4}  SWD "
              f"{row['swd']:7.2f}"
              + (f"  KID {row['kid']:.4f} ± {row['kid_std']:.4f}" if "kid" in row else "")
              + f"  {row['seconds']:.1f}s", flush=True)
    if not args.quick:
        save("samplers",
             {"stage": args.stage, "num_samples": n, "reference": args.ref, "rows": rows})
        plot(rows, RESULTS / "samplers.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
