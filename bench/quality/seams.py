"""Tile seams of SR stages: gradient energy across tile edges over that elsewhere, per tile size.

    python -m bench.quality.seams weights/cifar10-sr16to32.safetensors runs/sr/stage-*.safetensors
    python -m bench.quality.seams STAGE --tiles 32,64 --images 16 --steps 6

The protocol of the tiling tests: content without a grid of its own (blurred
Gaussian noise, so that bicubic knots cannot line up with the tiles), as large
as a tile, augmented at s = 0.1 and upsampled x2 in 3 x 3 tiles of each size,
6 steps; 1.0 means no seams. A stage trained on whole images treats a tile edge as an
image border and scores above it.
"""
from __future__ import annotations

import argparse
import sys

import kornia
import torch

import cascade_core as cc
from cascade_core.analysis.seams import boundary_energy_ratio, tile_edges
from cascade_core.run.tiling import plan_tiles


def content(images: int, size: int = 32) -> torch.Tensor:
    """Blurred noise scaled to a standard deviation of 0.5, clamped to [-1, 1]."""
    g = torch.Generator().manual_seed(3)
    img = kornia.filters.gaussian_blur2d(torch.randn(images, 3, size, size, generator=g), (9, 9),
                                         (1.5, 1.5), border_type="reflect")
    return (img / img.std() * 0.5).clamp(-1, 1)


def seam_ratio(stage, tile: int, images: int = 16, steps: int = 6) -> float:
    """The ratio for ``stage`` upsampling ``tile``-pixel content x2 in tiles of ``tile``
    pixels."""
    low = content(images, tile)
    lowres = cc.make_condition(low, 0.1, cc.NoiseSource.from_seed(1, images))
    plan = cc.SamplingPlan(steps=steps, tiling=tile)
    out = cc.super_resolve(stage, plan, cc.Conditioning.for_upsampling(lowres), seed=0)
    tiles = plan_tiles(stage, out.shape, tile)
    return boundary_energy_ratio(out, tile_edges(out.shape[-1], tiles))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.quality.seams", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stages", nargs="+", help="SR stage files")
    p.add_argument("--tiles", default="32,64", help="tile sizes, comma-separated")
    p.add_argument("--images", type=int, default=16)
    p.add_argument("--steps", type=int, default=6)
    args = p.parse_args(argv)
    tiles = [int(t) for t in args.tiles.split(",")]
    print("stage".ljust(48) + "".join(f"{t:>10} px" for t in tiles))
    for path in args.stages:
        stage = cc.load_stage(path)
        ratios = [seam_ratio(stage, t, images=args.images, steps=args.steps) for t in tiles]
        print(str(path).ljust(48) + "".join(f"{r:13.3f}" for r in ratios), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
