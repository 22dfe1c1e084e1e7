"""Sweep (XY plot): same noise in every cell, typed axes, one progress bar, interrupts."""
from __future__ import annotations

import pytest
import torch
from helpers import tiny_stage

import cascade_core as cc
from cascade_core.analysis.sweep import MAX_CELLS, SweepSettings, run_sweep
from nodes import NODE_CLASS_MAPPINGS, comfy_bridge
from nodes.images import to_comfy
from nodes.stage_nodes import LoadedStage
from nodes.sweep_axes import cells_of, parse_axis

SETTINGS = SweepSettings(plan=cc.SamplingPlan(steps=3, sampler="dpmpp_2m", spacing="karras"),
                         seed=3, s=0.1, strength=0.5)


@pytest.fixture(scope="module")
def sr():
    return tiny_stage("sr", resolution=8, low_res=4)


def image():
    return torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_cells_differ_only_by_their_axis_value(sr):
    x = parse_axis("s", "0.1, 0.1, 0.3")
    y = parse_axis("seed", "3, 3, 4")
    out = run_sweep(sr, image(), cells_of(x, y), SETTINGS)
    assert out.shape == (9, 3, 8, 8)
    grid = out.view(3, 3, 3, 8, 8)
    assert torch.equal(grid[0, 0], grid[0, 1]) and torch.equal(grid[0, 0], grid[1, 1])
    assert not torch.allclose(grid[0, 0], grid[0, 2])  # another s
    assert not torch.allclose(grid[0, 0], grid[2, 0])  # another seed
    # a cell equals the same settings run alone through the pipeline
    cond = cc.make_condition(image(), 0.3, cc.NoiseSource.from_seed(4 + 7919, 1))
    alone = cc.super_resolve(sr, cc.SamplingPlan(steps=3), cc.Conditioning.for_upsampling(cond),
                             seed=4)
    assert torch.equal(grid[2, 2], alone[0])


def test_refiner_sweep_over_strength():
    ref = tiny_stage("refiner", resolution=8, low_res=8)
    img = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    out = run_sweep(ref, img, cells_of(parse_axis("strength", "0, 0.5"), None), SETTINGS)
    assert torch.allclose(out[0], img[0].clamp(-1, 1)) and not torch.allclose(out[1], out[0])


@pytest.mark.parametrize("name,text,match", [
    ("s", "", "has no values"), ("s", " , ", "has no values"),
    ("steps", "10, ten", "not a finite number"), ("s", "0.1, 1.5", "out of range"),
    ("sampler", "euler, warp", "out of range"), ("tempo", "1", "unknown sweep axis"),
    ("guidance", "1, 25", r"values in \[0, 20\], as on the node's widget"),
    ("guidance", "nan", "out of range"), ("steps", "1001", r"\[1, 1000\]"),
    ("seed", str(2 ** 64), "out of range"), ("seed", "inf", "not a finite number"),
    ("seed", "-1", "out of range")])
def test_bad_axes_are_refused(name, text, match):
    with pytest.raises(cc.CascadeError, match=match):
        parse_axis(name, text)


def test_at_most_64_cells_and_two_different_axes():
    x = parse_axis("seed", ", ".join(str(i) for i in range(9)))
    with pytest.raises(cc.CascadeError, match=f"at most {MAX_CELLS}"):
        cells_of(x, parse_axis("steps", ", ".join(str(i + 1) for i in range(8))))
    assert len(cells_of(x, parse_axis("steps", "1, 2, 3, 4, 5, 6, 7"))) == 63
    with pytest.raises(cc.CascadeError, match="the same setting"):
        cells_of(parse_axis("s", "0, 0.1"), parse_axis("s", "0.2"))


def test_one_progress_over_all_cells_and_interrupts(sr):
    seen = []
    cells = cells_of(parse_axis("steps", "2, 3"), None)
    run_sweep(sr, image(), cells, SETTINGS, progress=lambda done, total, info: seen.append(
        (done, total)))
    assert seen[-1] == (5, 5) and all(t == 5 for _, t in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)

    def stop_in_second_cell(done, total, info):
        if done == 3:
            raise cc.SamplingInterrupted("stop")
    with pytest.raises(cc.SamplingInterrupted):
        run_sweep(sr, image(), cells, SETTINGS, progress=stop_in_second_cell)


def test_sweep_node_grid_cells_and_interrupt(sr):
    node = NODE_CLASS_MAPPINGS["CDMSweep"]()
    args = dict(stage=LoadedStage(sr, "tiny.safetensors"), image=to_comfy(image()), x_axis="s",
                x_values="0, 0.2", y_axis="steps", y_values="2, 3", seed=0, steps=2,
                sampler_name="euler", spacing="karras", class_name="unconditional",
                guidance=1.0, s=0.1, strength=0.5, dtype="fp32")
    grid, cells, axes = node.sweep(**args)
    assert cells.shape == (4, 8, 8, 3) and grid.shape[0] == 1
    assert grid.shape[1] > 2 * 96 and grid.shape[2] > 2 * 96  # cells enlarged, labels beside
    assert axes == "x: s = [0.0, 0.2]; y: steps = [2, 3]"
    comfy_bridge.request_interrupt()
    try:
        with pytest.raises(cc.SamplingInterrupted):
            node.sweep(**args)
    finally:
        comfy_bridge.request_interrupt(False)
    with pytest.raises(cc.CascadeError, match="has no values"):
        node.sweep(**{**args, "x_values": ""})
    # both axes s, the y values out of s's range: the same-setting sentence comes first
    with pytest.raises(cc.CascadeError, match="the two sweep axes are the same setting"):
        node.sweep(**{**args, "y_axis": "s", "y_values": "10, 20, 40"})


def test_sweep_takes_a_clean_image_never_an_augmented_condition():
    spec = NODE_CLASS_MAPPINGS["CDMSweep"].INPUT_TYPES()["required"]
    assert spec["image"][0] == "IMAGE"
    assert all(t[0] != "CDM_LOWRES" for t in spec.values())
