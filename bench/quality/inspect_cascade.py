"""The Stage Inspector chained over the shipped cascade: where does an error enter?

    python -m bench.quality.inspect_cascade

Base 16 px -> SR 32 px -> refiner 32 px on eight images (seed 2026, one per class
from 0), then the inspector after the SR stage and after the refiner: the pictures
go to bench/results/inspect_sr.png and inspect_refiner.png, the numbers to
bench/results/inspect_cascade.json and the terminal.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from PIL import Image

import cascade_core as cc

from ..common import RESULTS, save

WEIGHTS = Path(__file__).resolve().parents[2] / "weights"


def main() -> int:
    base, sr, ref = (cc.load_stage(WEIGHTS / f"cifar10-{n}.safetensors")
                     for n in ("base16", "sr16to32", "refiner32"))
    labels = torch.arange(8)
    plan = cc.SamplingPlan()
    low, _ = cc.generate(base, plan, cc.Conditioning.for_base(8, labels), seed=2026)
    cond = cc.make_condition(low, 0.1, cc.NoiseSource.from_seed(2026 + 7919, 8))
    high = cc.super_resolve(sr, plan, cc.Conditioning.for_upsampling(cond, labels), seed=2026)
    refined = cc.refine(ref, cc.SamplingPlan(steps=10, start=cc.Start.partial(0.4)),
                        cc.Conditioning.for_refining(high, labels=labels), seed=2026)
    out = {}
    for name, (a, b) in {"sr": (low, high), "refiner": (high, refined)}.items():
        reports = cc.stage_report(a, b)
        out[name] = [{"psnr": r.psnr, "detail": r.detail, "colour_shift": r.colour_shift}
                     for r in reports]
        picture = cc.inspection_picture(a[:4], b[:4])
        rows = torch.cat(list(picture), dim=1)  # four images, one above the other
        big = torch.nn.functional.interpolate(rows[None], scale_factor=4, mode="nearest")[0]
        Image.fromarray(cc.to_uint8(big)).save(RESULTS / f"inspect_{name}.png")
        print(name)
        for i, r in enumerate(reports):
            print(f"  image {i}: {r.text()}")
    print(f"wrote {save('inspect_cascade', {'results': out})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
