"""Softening JPEG's block grid: the exact correction at block edges, nothing elsewhere, each
image by its own excess, the training examples built from the softened image, and a JPEG
folder's grid measured flatter."""
from __future__ import annotations

import pytest
import torch
from helpers import content_folder

import cascade_core as cc
from bench.quality.seams import content, data_grid
from cascade_core.analysis.seams import boundary_energy_ratio
from cascade_core.process.deblock import SPREAD, block_edge_ratio, deblock, soften_block_grid
from train.cli import parse
from train.stage_recipe import example_maker, stage_config


def blocks(values: torch.Tensor, block: int = 8) -> torch.Tensor:
    """An image of constant blocks: ``values`` (..., h, w) each repeated over block x block."""
    return values.repeat_interleave(block, -1).repeat_interleave(block, -2)


def test_steps_across_block_edges_shrink_by_the_spread_and_the_rest_stays():
    """Along one row of constant blocks a, b the step b - a becomes (1 - 2 s (2/3)) (b - a);
    the pixels three or more away from any edge keep their values, and each row keeps its sum
    (what moves to one side of an edge leaves the other)."""
    g = torch.Generator().manual_seed(0)
    row = blocks(torch.rand(3, 1, 4, generator=g))[:, :1]  # (3, 1, 32): no edges along H
    s = 0.06
    out = soften_block_grid(row, s)
    for e in (8, 16, 24):
        before = row[..., e] - row[..., e - 1]
        after = out[..., e] - out[..., e - 1]
        torch.testing.assert_close(after, before * (1 - 2 * s * SPREAD[0]))
        torch.testing.assert_close(out[..., e + 1] - row[..., e + 1],
                                   -s * SPREAD[1] * (row[..., e] - row[..., e - 1]))
    far = [c for c in range(32) if min(abs(c - e) for e in (7.5, 15.5, 23.5)) > 2]
    assert torch.equal(out[..., far], row[..., far])
    torch.testing.assert_close(out.sum(-1), row.sum(-1))
    assert torch.equal(soften_block_grid(row, 0.0), row)
    untouched = row.clone()
    soften_block_grid(row, s)
    assert torch.equal(row, untouched)  # a new tensor; the input is left alone


def test_each_image_is_softened_by_its_own_excess():
    """In one batch: a blocky image is softened (its edge ratio falls towards 1), an image whose
    block edges are already no stronger than elsewhere is returned exactly; the per-image
    ratio is the seam measure's, image by image."""
    g = torch.Generator().manual_seed(1)
    smooth = content(1, 32)
    blocky = smooth + blocks(torch.rand(1, 3, 4, 4, generator=g)) * 0.3
    calm = soften_block_grid(smooth, 0.5)  # edges weaker than elsewhere: nothing to take out
    batch = torch.cat([blocky, calm])
    ratios = block_edge_ratio(batch)
    assert ratios[0] > 1.5 and ratios[1] < 1
    for i, img in enumerate(batch):
        assert ratios[i].item() == pytest.approx(boundary_energy_ratio(img[None], [8, 16, 24]),
                                                 rel=1e-5)
    out = deblock(batch, 0.6)
    assert torch.equal(out[1], calm[0])
    assert 1 < block_edge_ratio(out)[0] < ratios[0] * 0.7
    assert torch.equal(deblock(batch, 0.0), batch)


def test_bad_amount_block_or_size_is_refused():
    x = torch.zeros(1, 3, 16, 16)
    with pytest.raises(cc.CascadeError, match="0 <= amount <= 1"):
        deblock(x, 1.5)
    with pytest.raises(cc.CascadeError, match="blocks of >= 2 px"):
        soften_block_grid(x, 0.06, block=1)
    with pytest.raises(cc.CascadeError, match="too small for its block grid"):
        deblock(torch.zeros(1, 3, 8, 8), 0.6)


def test_training_examples_come_from_the_softened_image(tmp_path):
    """``--deblock A``: the target and the SR stage's low-res input are made from the image with
    its grid softened; without it, from the image as stored."""
    argv = ["--data", "x", "--out", str(tmp_path), "--resolution", "16", "--low-res", "8",
            "--no-flip"]
    stored = blocks(torch.rand(3, 2, 2, generator=torch.Generator().manual_seed(2))) * 2 - 1
    image = cc.to_uint8(stored[None])[0]
    made = {}
    for amount in (0.0, 0.6):
        cfg, _, _ = parse("sr", "t", [*argv, "--deblock", str(amount)])
        made[amount] = example_maker(cfg, stage_config(cfg, 0, ()))(image, 0, 5)
    as_stored = cc.from_uint8(image)
    assert torch.equal(made[0.0]["x0"], as_stored)
    assert torch.equal(made[0.6]["x0"], deblock(as_stored[None], 0.6)[0])
    assert not torch.equal(made[0.6]["x0"], as_stored)
    assert not torch.equal(made[0.6]["cond"], made[0.0]["cond"])
    assert torch.equal(made[0.6]["t"], made[0.0]["t"])  # the same draws: nothing else moved


def test_softening_flattens_a_jpeg_folders_grid(tmp_path):
    """``bench.quality.seams --data F --deblock A``: JPEG-compressed smooth images show their
    8 px blocks; softened, the block edges carry less of the excess, more so the larger A."""
    folder = str(content_folder(tmp_path, "jpg"))
    ratios = [data_grid(folder, 8, count=12, deblock=a) for a in (0, 0.3, 0.6)]
    assert ratios[0] > 1.2 and ratios[0] > ratios[1] > ratios[2], ratios


def test_shift_moves_the_image_by_a_drawn_offset_reflecting_into_the_gap(tmp_path):
    """``--shift N``: the target is the stored image moved right and down by 0..N pixels per
    example (the stored pixels exactly, the gap a mirror of them), the offsets vary from
    example to example, and a shift as large as the image is refused by name."""
    from train.data import shifted

    x = torch.arange(2 * 16 * 16, dtype=torch.float32).view(2, 16, 16)
    moved = shifted(x, [3, 5])
    assert torch.equal(moved[:, 5:, 3:], x[:, :11, :13])
    assert torch.equal(moved[:, 5:, 2], x[:, :11, 1])  # mirrored about the first column
    assert torch.equal(shifted(x, [0, 0]), x)
    with pytest.raises(cc.CascadeError, match="--shift must be smaller"):
        shifted(x, [16, 0])
    argv = ["--data", "x", "--out", str(tmp_path), "--resolution", "16", "--low-res", "8",
            "--no-flip", "--shift", "7"]
    cfg, _, _ = parse("sr", "t", argv)
    maker = example_maker(cfg, stage_config(cfg, 0, ()))
    image = cc.to_uint8(torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(3)))[0]
    stored = cc.from_uint8(image)
    offsets = set()
    for key in range(12):
        x0 = maker(image, 0, key)["x0"]
        found = [(dx, dy) for dx in range(8) for dy in range(8)
                 if torch.equal(x0[:, dy:, dx:], stored[:, :16 - dy, :16 - dx])]
        assert found, key
        offsets.add(found[0])
    assert len(offsets) >= 6
