"""Tile seams of SR stages: gradient energy across tile edges over that elsewhere, per tile size.

    python -m bench.quality.seams weights/cifar10-sr16to32.safetensors runs/sr/stage-*.safetensors
    python -m bench.quality.seams STAGE --tiles 32,64 --images 16 --steps 6
    python -m bench.quality.seams --data ../shared/data/cifar10/test   # the data's own grid
    python -m bench.quality.seams --data ../shared/data/cifar10/train --deblock 0.6  # softened

The protocol of the tiling tests: content without a grid of its own (blurred
Gaussian noise, so that bicubic knots cannot line up with the tiles), as large
as a tile, augmented at s = 0.1 and upsampled x2 in 3 x 3 tiles of each size,
6 steps; 1.0 means no seams. A stage trained on whole images treats a tile edge as an
image border and scores above it.

The next two columns tell a seam from a **block grid**: the ratio at the
multiples of ``--grid`` pixels that are *not* tile edges (smallest tile size),
and at every such multiple in the untiled output. CIFAR-10 as shipped is
JPEG-compressed, whose 8 px blocks leave 1.17x the gradient energy at their
edges (``--data``); a stage trained on whole images learns to draw that grid
from the image's border, so in tiles it draws one per tile, and tile edges
that fall on the grid score high even where the tiles themselves join cleanly.
``--deblock S`` also measures the data with its grid softened as ``train.stage2
--deblock S`` trains on it. With ``--data``, a last column: the grid in the stage's
upsampling of 64 of the data's own images, whole (the grid a stage draws on real content).
"""
from __future__ import annotations

import argparse
import sys

import kornia
import torch

import cascade_core as cc
from cascade_core.analysis.seams import boundary_energy_ratio, tile_edges
from cascade_core.process.deblock import deblock as soften
from cascade_core.run.tiling import plan_tiles
from train.eval import load_images


def content(images: int, size: int = 32) -> torch.Tensor:
    """Blurred noise scaled to a standard deviation of 0.5, clamped to [-1, 1]."""
    g = torch.Generator().manual_seed(3)
    img = kornia.filters.gaussian_blur2d(torch.randn(images, 3, size, size, generator=g), (9, 9),
                                         (1.5, 1.5), border_type="reflect")
    return (img / img.std() * 0.5).clamp(-1, 1)


def upscaled(stage, tile: int, images: int = 16, steps: int = 6):
    """``stage`` upsampling ``tile``-pixel content x2 in tiles of ``tile`` pixels (0: untiled):
    the output and its interior tile edges."""
    size = tile or 32
    low = content(images, size)
    lowres = cc.make_condition(low, 0.1, cc.NoiseSource.from_seed(1, images))
    plan = cc.SamplingPlan(steps=steps, tiling=tile or "off")
    out = cc.super_resolve(stage, plan, cc.Conditioning.for_upsampling(lowres), seed=0)
    tiles = plan_tiles(stage, out.shape, tile) if tile else None
    return out, tile_edges(out.shape[-1], tiles) if tiles else []


def upscaled_data(stage, folder: str, images: int = 64, steps: int = 6) -> torch.Tensor:
    """``stage`` upsampling ``images`` of a dataset folder, each downsampled to the stage's
    low-res size first: whole images, as the stage was trained on them."""
    pixels, _ = load_images(folder, stage.config.resolution, limit=images)
    low = cc.downsample(cc.from_uint8(pixels), stage.config.low_res)
    lowres = cc.make_condition(low, 0.1, cc.NoiseSource.from_seed(1, images))
    return cc.super_resolve(stage, cc.SamplingPlan(steps=steps),
                            cc.Conditioning.for_upsampling(lowres), seed=0)


def grid_lines(size: int, period: int, *, besides=()) -> list[int]:
    """The multiples of ``period`` inside a side of ``size``, leaving out ``besides``."""
    return [e for e in range(period, size, period) if e not in besides]


def data_grid(folder: str, period: int, count: int = 2000, deblock: float = 0.0,
              smoothest: float = 1.0) -> float:
    """The ratio at the multiples of ``period`` in ``count`` images of a dataset folder (the
    ``smoothest`` fraction of them by gradient energy: blocking shows most in smooth images),
    softened by ``deblock`` first (as ``train.stage2 --deblock`` trains on them)."""
    images, _ = load_images(folder, 32, limit=count)
    x = cc.from_uint8(images)
    if smoothest < 1:
        energy = ((x[..., 1:] - x[..., :-1]) ** 2).mean((1, 2, 3))
        x = x[energy <= energy.quantile(smoothest)]
    if deblock:
        x = soften(x, deblock, period)
    return boundary_energy_ratio(x, grid_lines(x.shape[-1], period))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.quality.seams", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stages", nargs="*", help="SR stage files")
    p.add_argument("--tiles", default="32,64", help="tile sizes, comma-separated")
    p.add_argument("--images", type=int, default=16)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--grid", type=int, default=8, help="block size of the grid columns")
    p.add_argument("--data", default="", help="also measure this image folder's block grid")
    p.add_argument("--deblock", type=float, default=0.0,
                   help="with --data: also measure it softened as train.stage2 --deblock A")
    args = p.parse_args(argv)
    try:
        return report(args)
    except cc.CascadeError as e:  # a missing or unreadable file: one line, not a traceback
        print(f"error: {e}", file=sys.stderr)
        return 2


def report(args) -> int:
    """Print the data's grid (``--data``) and each stage's row."""
    if args.data:
        for name, part in (("all", 1.0), ("smoothest fifth", 0.2)):
            grid = data_grid(args.data, args.grid, smoothest=part)
            row = f"{args.data}, {name}: {args.grid} px grid {grid:.3f}"
            if args.deblock:
                softened = data_grid(args.data, args.grid, deblock=args.deblock, smoothest=part)
                row += f", softened by {args.deblock}: {softened:.3f}"
            print(row, flush=True)
    tiles = [int(t) for t in args.tiles.split(",")]
    if not args.stages:
        return 0
    print("stage".ljust(48) + "".join(f"{t:>10} px" for t in tiles)
          + f"{'grid, tiled':>14}{'grid, untiled':>15}" + f"{'grid, data':>12}" * bool(args.data))
    for path in args.stages:
        stage = cc.load_stage(path)
        row = []
        for t in tiles:
            out, edges = upscaled(stage, t, images=args.images, steps=args.steps)
            row.append(boundary_energy_ratio(out, edges))
            if t == min(tiles):
                grid = boundary_energy_ratio(out, grid_lines(out.shape[-1], args.grid,
                                                             besides=edges))
        whole, _ = upscaled(stage, 0, images=args.images, steps=args.steps)
        untiled = boundary_energy_ratio(whole, grid_lines(whole.shape[-1], args.grid))
        line = str(path).ljust(48) + "".join(f"{r:13.3f}" for r in row)
        line += f"{grid:14.3f}{untiled:15.3f}"
        if args.data:
            drawn = upscaled_data(stage, args.data, steps=args.steps)
            line += f"{boundary_energy_ratio(drawn, grid_lines(drawn.shape[-1], args.grid)):12.3f}"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
