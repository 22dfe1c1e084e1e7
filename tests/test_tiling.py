"""Tiled evaluation: exact for pointwise networks, seamless on a real stage, memory-triggered."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import content_folder, tiny_stage

import cascade_core as cc
from bench.quality.seams import content, data_grid, grid_lines, upscaled
from cascade_core.analysis.seams import boundary_energy_ratio, tile_edges
from cascade_core.run.tiling import TilePlan, estimate_bytes, plan_tiles, starts, tiled_call

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"


@pytest.mark.parametrize("shape,tile,overlap", [((40, 56), 16, 4), ((33, 20), 8, 2),
                                                ((64, 64), 32, 8)])
def test_pointwise_network_tiled_equals_untiled(shape, tile, overlap):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, *shape, generator=g)
    cond = torch.randn(2, 3, *shape, generator=g)

    def pointwise(a, c):
        return torch.tanh(a * 1.7 + 0.3) - c * a

    tiled = tiled_call(pointwise, x, cond=cond, plan=TilePlan(tile, overlap))
    torch.testing.assert_close(tiled, pointwise(x, cond), atol=1e-6, rtol=0)


def test_a_tiles_outermost_pixels_on_a_shared_side_are_not_kept():
    """Whatever a tile draws in its outer margin where a neighbour takes over is discarded:
    poison those pixels and the canvas away from its own border is the clean result, exactly."""
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    plan = TilePlan(32, 8)
    assert plan.margin == 2 and TilePlan(8, 2).margin == 0

    def poisoned_rim(a, _):
        out = a * 2
        out[..., :2, :] += 100
        out[..., -2:, :] += 100
        out[..., :, :2] += 100
        out[..., :, -2:] += 100
        return out

    tiled = tiled_call(poisoned_rim, x, cond=None, plan=plan)
    torch.testing.assert_close(tiled[..., 2:-2, 2:-2], x[..., 2:-2, 2:-2] * 2, atol=1e-5, rtol=0)
    assert float(tiled[0, 0, 0, 10] - x[0, 0, 0, 10] * 2) == pytest.approx(100, abs=1e-3)  # border


def test_tiles_cover_every_pixel_and_overlap():
    for size, tile, overlap in [(100, 32, 8), (64, 32, 8), (32, 32, 8), (20, 32, 8)]:
        origins = starts(size, tile, overlap)
        covered = torch.zeros(size, dtype=torch.bool)
        for s in origins:
            covered[s:s + tile] = True
        assert covered.all() and origins[-1] + min(tile, size) == size
        assert all(b - a <= tile - overlap for a, b in zip(origins, origins[1:]))


def test_real_stage_has_no_seams():
    """Content without a grid of its own (blurred noise: bicubic upsampling would put knots on
    a pixel grid that lines up with the tiles), through the shipped refiner in 9 tiles. The
    refiner was trained on crops, so a tile edge looks to it like any interior line; the SR
    stage, trained on whole images, draws a block grid in every tile (the next tests: a
    property of those weights, not of the blending)."""
    ref = cc.load_stage(WEIGHTS / "cifar10-refiner32.safetensors")
    img = content(16, 64)  # the seam bench's content, as large as two tiles
    plan = cc.SamplingPlan(steps=6, start=cc.Start.partial(0.5), tiling=32)
    tiled = cc.refine(ref, plan, cc.Conditioning.for_refining(img), seed=0)
    edges = tile_edges(64, plan_tiles(ref, tiled.shape, 32))
    assert len(edges) >= 2  # the image really was tiled
    ratio = boundary_energy_ratio(tiled, edges)
    assert abs(ratio - 1) < 0.10, ratio


def test_memory_estimate_triggers_tiling_and_off_refuses_naming_the_size():
    stage = tiny_stage("sr", resolution=8, low_res=4)
    shape = (1, 3, 64, 64)
    need = estimate_bytes(stage.config, (1, 64, 64))
    assert plan_tiles(stage, shape, "auto", budget=need * 2) is None
    plan = plan_tiles(stage, shape, "auto", budget=need // 4)
    assert plan is not None and plan.tile < 64 and plan.tile % stage.config.size_multiple == 0
    assert estimate_bytes(stage.config, (1, plan.tile, plan.tile)) <= need // 4
    with pytest.raises(cc.CascadeError, match="a 64x64 image is too large"):
        plan_tiles(stage, shape, "off", budget=need // 4)
    with pytest.raises(cc.CascadeError, match="tile size does not fit"):
        plan_tiles(stage, shape, 7)


def test_full_size_attention_estimate_explains_the_768px_failure():
    """ComfyUI's 768x768 example through the shipped SR stage (x2, attention in the middle at a
    quarter of the output size) asked for 347,892,350,976 bytes; the estimate must see it."""
    sr = cc.load_stage(WEIGHTS / "cifar10-sr16to32.safetensors")
    assert estimate_bytes(sr.config, (1, 1536, 1536)) > 300e9
    assert plan_tiles(sr, (1, 3, 1536, 1536), "auto", budget=8 * 2 ** 30) is not None


def test_the_shipped_sr_stages_tile_seams_are_its_block_grid():
    """The shipped SR stage, trained on whole JPEG-compressed 32 px images, draws JPEG's 8 px
    block grid from whatever it sees as the image's border. In 32 px tiles (edges on that grid)
    every tile draws one: the tile edges are no stronger than the grid lines between them, and
    the untiled output has no grid (the model card's account of its seams)."""
    assert grid_lines(64, 8, besides=[24, 32, 56]) == [8, 16, 40, 48]
    sr = cc.load_stage(WEIGHTS / "cifar10-sr16to32.safetensors")
    out, edges = upscaled(sr, 32)
    assert edges == [24, 32, 56]
    at_edges = boundary_energy_ratio(out, edges)
    between = boundary_energy_ratio(out, grid_lines(64, 8, besides=edges))
    assert at_edges > 1.15 and between > 1.15 and at_edges < between + 0.05
    whole, none = upscaled(sr, 0)
    assert none == [] and boundary_energy_ratio(whole, grid_lines(64, 8)) < 1.10


def test_the_data_grid_of_jpeg_images_stands_out(tmp_path):
    """``bench.quality.seams --data``: smooth images saved as JPEG show their 8 px blocks; the
    same images saved losslessly do not."""
    assert data_grid(str(content_folder(tmp_path, "jpg")), 8, count=12) > 1.2
    assert data_grid(str(content_folder(tmp_path, "png")), 8, count=12) < 1.1
