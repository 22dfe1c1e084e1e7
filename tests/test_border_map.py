"""The border map: a stage told where its image really ends (``models.borders``), so that a
tile's edge is not drawn as a border. The map of whole images, of training crops and of tiles;
widening a stage without changing what it computes; the training flag; the file format."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import tiny_stage

import cascade_core as cc
from train.cli import parse
from train.stage_recipe import example_maker, stage_config


def _sides(frame: torch.Tensor) -> tuple:
    """Which sides of a (1, H, W) map carry the frame: (top, bottom, left, right)."""
    f = frame[0]
    return (bool(f[0].all()), bool(f[-1].all()), bool(f[:, 0].all()), bool(f[:, -1].all()))


def _expected(sides: tuple, size: int) -> torch.Tensor:
    """The map with the frame on exactly ``sides``."""
    frame = torch.zeros(1, size, size)
    top, bottom, left, right = sides
    frame[0, 0] += top
    frame[0, -1] += bottom
    frame[0, :, 0] += left
    frame[0, :, -1] += right
    return frame.clamp(max=1)


def test_the_whole_frame_marks_the_outermost_rows_and_columns_only():
    frame = cc.whole_frame(2, (5, 7))
    assert frame.shape == (2, 1, 5, 7)
    assert frame[..., 1:-1, 1:-1].abs().sum() == 0
    assert bool((frame[..., 0, :] == 1).all() and (frame[..., :, -1] == 1).all())
    assert int(frame.sum()) == 2 * (2 * 7 + 2 * 5 - 4)


def test_a_widened_stage_computes_exactly_what_it_did_and_the_map_then_matters():
    sr = tiny_stage("sr", 16, 8)
    wide = cc.add_border_map(sr)
    assert wide.config.border_map and not sr.config.border_map
    assert wide.net.stem.weight.shape[1] == sr.net.stem.weight.shape[1] + 1
    assert cc.add_border_map(wide) is wide
    g = torch.Generator().manual_seed(0)
    x, cond = torch.randn(2, 3, 16, 16, generator=g), torch.randn(2, 3, 8, 8, generator=g)
    args = (x, torch.tensor([300.0, 700.0]))
    kw = dict(cond=cond, aug_level=torch.tensor([0.1, 0.3]))
    with torch.no_grad():
        before, after = sr(*args, **kw), wide(*args, **kw)
        torch.testing.assert_close(after, before, atol=0, rtol=0)
        # the new channel is live once its weights are: no frame differs from the whole frame
        wide.net.stem.weight[:, -1].normal_(generator=g)
        tile = wide(*args, **kw, frame=torch.zeros(2, 1, 16, 16))
        whole = wide(*args, **kw, frame=cc.whole_frame(2, (16, 16)))
    torch.testing.assert_close(whole, wide(*args, **kw).detach(), atol=0, rtol=0)
    assert (tile - whole).abs().max() > 1e-3
    with pytest.raises(cc.CascadeError, match="takes no border map"):
        sr(*args, **kw, frame=torch.zeros(2, 1, 16, 16))
    with pytest.raises(cc.CascadeError, match="input of the U-Net"):
        cc.StageConfig(role="refiner", resolution=8, low_res=8, network="conv", border_map=True)


def test_a_training_crop_carries_the_frame_on_the_sides_it_shares_with_the_image(tmp_path):
    """Every crop's map is the whole image's map cut at the crop: found by locating the crop in
    an image whose every pixel differs; whole-image steps carry the whole frame."""
    cfg, _, _ = parse("sr", "t", ["--data", "x", "--out", str(tmp_path), "--preset", "tiny",
                                  "--resolution", "16", "--low-res", "8", "--crop", "8",
                                  "--crop-fraction", "0.5", "--border-map", "--no-flip",
                                  "--batch-size", "1"])
    maker = example_maker(cfg, stage_config(cfg, 3, ("a", "b", "c")))
    image = np.random.default_rng(0).permutation(16 * 16 * 3).reshape(16, 16, 3) % 251
    image = image.astype(np.uint8)
    whole = cc.from_uint8(image)
    seen = set()
    for key in range(40):
        ex = maker(image, 0, key)
        if ex["x0"].shape[-1] == 16:
            torch.testing.assert_close(ex["frame"], cc.whole_frame(1, (16, 16))[0])
            continue
        hits = [(t, left) for t in range(9) for left in range(9)
                if torch.equal(whole[:, t:t + 8, left:left + 8], ex["x0"])]
        assert len(hits) == 1
        top, left = hits[0]
        sides = (top == 0, top == 8, left == 0, left == 8)
        torch.testing.assert_close(ex["frame"], _expected(sides, 8))
        seen.add(_sides(ex["frame"]))
    assert (False, False, False, False) in seen and len(seen) >= 3


def test_border_map_training_needs_crops(tmp_path):
    with pytest.raises(cc.CascadeError, match="learned from crops"):
        parse("sr", "t", ["--data", "x", "--out", str(tmp_path), "--preset", "tiny",
                          "--resolution", "16", "--low-res", "8", "--crop", "0",
                          "--border-map"])


def test_tiles_get_the_frame_on_their_image_sides_only():
    """A 3 x 3 tiling of a 32 px canvas: the corner tile's map has the frame on its two image
    sides, the middle tile's none; the untiled run gets the whole frame (None)."""
    stage = cc.add_border_map(tiny_stage("sr", 16, 8))
    seen = []
    forward = stage.net.forward

    def spy(x, *args):
        seen.append((x.shape[-1], None if len(args) < 6 else args[5]))
        return forward(x, *args)
    stage.net.forward = spy
    low = torch.rand(1, 3, 16, 16) * 2 - 1
    plan = cc.SamplingPlan(steps=1, sampler="ddim", tiling=16)
    cond = cc.Conditioning.for_upsampling(cc.make_condition(low, 0.1,
                                                           cc.NoiseSource.from_seed(1, 1)))
    out = cc.super_resolve(stage, plan, cond, seed=0)
    assert out.shape == (1, 3, 32, 32) and torch.isfinite(out).all()
    frames = [f for size, f in seen if size == 16]
    assert len(frames) == 9 and all(f is not None and f.shape == (1, 1, 16, 16) for f in frames)
    sides = [_sides(f[0]) for f in frames]
    assert sides[0] == (True, False, True, False)   # top-left
    assert sides[4] == (False, False, False, False)  # middle
    assert sides[8] == (False, True, False, True)   # bottom-right
    for f, s in zip(frames, sides):
        torch.testing.assert_close(f[0], _expected(s, 16))
    seen.clear()
    cond = cc.Conditioning.for_upsampling(cc.make_condition(low, 0.1,
                                                           cc.NoiseSource.from_seed(1, 1)))
    cc.super_resolve(stage, cc.SamplingPlan(steps=1, sampler="ddim"), cond, seed=0)
    assert [f for _, f in seen] == [None]


def test_fine_tuning_with_a_border_map_widens_the_stage_and_trains_it(tmp_path):
    from test_train import make_folder, run
    data = make_folder(tmp_path / "d")
    common = ["--resolution", "16", "--low-res", "8", "--crop", "8", "--steps", "2"]
    assert run("sr", data, tmp_path / "a", *common) == 0
    start = cc.load_stage(tmp_path / "a" / "latest.safetensors")
    assert run("sr", data, tmp_path / "b", *common, "--crop-fraction", "0.5", "--border-map",
               "--lr", "1e-2", "--init-from", str(tmp_path / "a" / "latest.safetensors")) == 0
    tuned = cc.load_stage(tmp_path / "b" / "latest.safetensors")
    assert tuned.config.border_map
    w = tuned.net.stem.weight
    assert w.shape[1] == start.net.stem.weight.shape[1] + 1 and w[:, -1].abs().max() > 0
    written = json.loads(cc.read_config(tmp_path / "b" / "latest.safetensors")[1]["cdm_stage"])
    assert written["border_map"] is True and written["format_version"] == 7


def test_stage_info_says_a_stage_takes_the_map():
    from nodes.stage_nodes import LoadedStage, describe
    sr = tiny_stage("sr", 16, 8)
    assert "real borders" not in describe(LoadedStage(sr, "sr.safetensors"))
    assert "real borders" in describe(LoadedStage(cc.add_border_map(sr), "sr.safetensors"))
