"""Parallel cascades: regions of one canvas merged at every evaluation (``run.regions``)."""
import dataclasses
from unittest import mock

import pytest
import torch

import cascade_core as cc
from bench.quality.seams import content
from cascade_core import NetInputs, Region, generate_regions
from cascade_core.analysis.seams import boundary_energy_ratio
from cascade_core.run.regions import MergedDenoiser, member_inputs
from cascade_core.run.tiling import estimate_bytes, starts
from tests.helpers import tiny_stage
from tests.test_tiling import WEIGHTS


@pytest.fixture(scope="module")
def stage():
    return tiny_stage(resolution=8, num_classes=3, learn_sigma=True)


def plan(sampler="dpmpp_2m", **kw):
    return cc.SamplingPlan(sampler=sampler, steps=4, **kw)


@pytest.mark.parametrize("sampler", ["dpmpp_2m", "ddpm"])
def test_one_member_over_the_canvas_is_plain_sampling_bit_for_bit(stage, sampler):
    labels = torch.tensor([0, 2])
    merged = generate_regions([Region(stage, labels)], plan(sampler), canvas=(8, 8), batch=2,
                              seed=3)
    plain, _ = cc.generate(stage, plan(sampler), cc.Conditioning.for_base(2, labels), seed=3)
    assert torch.equal(merged, plain)


def test_two_identical_members_equal_one_and_weight_zero_changes_nothing(stage):
    """Two members of one stage on boxes of one size run as one batch (one network call per
    evaluation): equal to one member up to the batched convolution's rounding."""
    labels = torch.tensor([1])
    one = generate_regions([Region(stage, labels)], plan(), canvas=(8, 16), batch=1, seed=0)
    two = generate_regions([Region(stage, labels), Region(stage, labels)], plan(),
                           canvas=(8, 16), batch=1, seed=0)
    other = Region(stage, torch.tensor([2]), box=(0, 0, 8, 8), weight=0.0)
    zero = generate_regions([Region(stage, labels), other], plan(), canvas=(8, 16), batch=1,
                            seed=0)
    assert one.shape == (1, 3, 8, 16) and torch.equal(one, zero)
    assert float((one - two).abs().max()) < 1e-4
    merged = MergedDenoiser(stage, member_inputs(stage, [Region(stage, labels)] * 2, batch=1,
                                                 inputs_for=lambda s: NetInputs()),
                            plan(), canvas=(8, 16), batch=1)
    assert [len(pieces) for _, pieces in merged.units] == [2]


def test_members_batch_only_where_the_memory_estimate_lets_them(stage):
    """Three same-size members batch into one call; with a budget that fits one member but not
    three they run one by one, and tiled members never batch."""
    regions = [Region(stage, torch.tensor([k]), box=(0, 4 * k, 8, 8)) for k in range(3)]
    members = member_inputs(stage, regions, batch=1, inputs_for=lambda s: NetInputs())

    def units(tiling="auto"):
        merged = MergedDenoiser(stage, members, plan(tiling=tiling), canvas=(8, 16), batch=1)
        return [len(pieces) for _, pieces in merged.units]
    assert units() == [3]
    one = estimate_bytes(stage.config, (1, 8, 8))
    with mock.patch("cascade_core.run.tiling.available_bytes", return_value=int(2.5 * one)):
        assert units() == [1, 1, 1]
    assert units(tiling=4) == [1, 1, 1]


def test_a_members_class_reaches_only_its_region(stage):
    """Left and right halves, no overlap: changing the right member's class leaves the left half
    as it was and changes the right half (the shared x_t couples them only through the sampler,
    which updates each pixel from its own estimate)."""
    def run(right):
        return generate_regions([Region(stage, torch.tensor([0]), box=(0, 0, 8, 8)),
                                 Region(stage, torch.tensor([right]), box=(0, 8, 8, 8))],
                                plan(), canvas=(8, 16), batch=1, seed=5)
    a, b = run(1), run(2)
    assert torch.equal(a[..., :8], b[..., :8])
    assert float((a[..., 8:] - b[..., 8:]).abs().max()) > 1e-3


def test_overlaps_are_normalised_and_deterministic(stage):
    regions = [Region(stage, torch.tensor([0]), box=(0, 0, 8, 12)),
               Region(stage, torch.tensor([1]), box=(0, 4, 8, 12), weight=2.0)]
    a = generate_regions(regions, plan(), canvas=(8, 16), batch=1, seed=2)
    b = generate_regions(regions, plan(), canvas=(8, 16), batch=1, seed=2)
    assert torch.equal(a, b) and float(a.abs().max()) <= 1.0


def test_members_of_different_schedules_merge_on_the_vE_noise_level():
    cosine = tiny_stage(resolution=8, num_classes=3)
    linear = tiny_stage(resolution=8, num_classes=3, seed=1,
                        schedule=cc.ScheduleConfig("linear", 100))
    out = generate_regions([Region(cosine, torch.tensor([0]), box=(0, 0, 8, 12)),
                            Region(linear, torch.tensor([1]), box=(0, 4, 8, 12))],
                           plan(), canvas=(8, 16), batch=1, seed=0)
    assert out.shape == (1, 3, 8, 16) and bool(torch.isfinite(out).all())


def test_bad_regions_are_sentences(stage):
    def run(*regions, canvas=(8, 16)):
        return generate_regions(list(regions), plan(), canvas=canvas, batch=1, seed=0)
    with pytest.raises(cc.CascadeError, match="uncovered pixel.*columns 8-15"):
        run(Region(stage, torch.tensor([0]), box=(0, 0, 8, 8)))
    with pytest.raises(cc.CascadeError, match="must lie inside the canvas"):
        run(Region(stage, torch.tensor([0]), box=(0, 12, 8, 8)))
    with pytest.raises(cc.CascadeError, match="mask must cover the canvas"):
        run(Region(stage, torch.tensor([0]), mask=torch.ones(8, 8)))
    with pytest.raises(cc.CascadeError, match="weight must be finite and not negative"):
        Region(stage, torch.tensor([0]), weight=-1.0)
    with pytest.raises(cc.CascadeError, match="multiple of the stage's total downsampling"):
        run(Region(stage, torch.tensor([0]), box=(0, 0, 8, 15)),
            Region(stage, torch.tensor([0]), box=(0, 8, 8, 8)))
    with pytest.raises(cc.CascadeError, match="same number of channels"):
        run(Region(stage, torch.tensor([0])), Region(tiny_stage(resolution=8, channels=1)))
    with pytest.raises(cc.CascadeError, match="at least one region"):
        generate_regions([Region(stage)][:0], plan(), canvas=(8, 8), batch=1, seed=0)


def test_region_nodes_build_a_wide_canvas_through_the_base_sampler(tiny_cascade):
    """Three classes left to right on a 16 x 48 canvas, overlapping: the chained Region nodes
    into the Base Sampler's regions input. Changing the right region's class changes the right
    of the canvas most (through the overlaps the change spreads, step by step, leftwards)."""
    from nodes import comfy_bridge as bridge
    from nodes.region_nodes import CDMRegion
    from nodes.sampling_nodes import CDMBaseSampler
    from nodes.stage_nodes import CDMStageLoader

    bridge.add_stage_dir(tiny_cascade)
    try:
        (base,) = CDMStageLoader().load("cifar10-base16.safetensors")

        def canvas(right):
            regions = None
            for left, name in ((0, "airplane"), (14, "ship"), (28, right)):
                (regions,) = CDMRegion().region(base, name, left, 0, 20, 16, "pixels", 1.0,
                                                regions=regions)
            return CDMBaseSampler().sample(base, seed=0, steps=3, sampler_name="euler",
                                           spacing="karras", class_name="random", guidance=1.0,
                                           batch_size=1, truncate_s=0.0, dtype="fp32",
                                           regions=regions, canvas_width=48, canvas_height=16)
        (a, lowres), (b, _) = canvas("automobile"), canvas("truck")
        assert a.shape == (1, 16, 48, 3) and lowres.image.shape == (1, 3, 16, 48)
        left = float((a[:, :, :14] - b[:, :, :14]).abs().mean())
        right = float((a[:, :, 34:] - b[:, :, 34:]).abs().mean())
        assert right > 1e-3 and left < right / 2, (left, right)
        # truncated, the merged canvas hands over z_s at s, with the regions that drew it
        (cat,) = CDMRegion().region(base, "cat", 0, 0, 1, 1, "fraction", 1.0)
        _, z = CDMBaseSampler().sample(base, seed=0, steps=3, sampler_name="euler",
                                       spacing="karras", class_name="random", guidance=1.0,
                                       batch_size=1, truncate_s=0.2, dtype="fp32",
                                       regions=cat, canvas_width=32)
        assert z.image.shape == (1, 3, 16, 32) and float(z.level[0]) == pytest.approx(0.2)
        assert [r.box for r in z.regions] == [(0, 0, 16, 32)]
        with pytest.raises(cc.CascadeError, match="CDM Base Sampler: .*must lie inside"):
            CDMBaseSampler().sample(base, seed=0, steps=3, sampler_name="euler",
                                    spacing="karras", class_name="random", guidance=1.0,
                                    batch_size=1, truncate_s=0.0, dtype="fp32",
                                    regions=CDMRegion().region(base, "cat", 8, 0, 16, 16,
                                                               "pixels", 1.0)[0])
        with pytest.raises(cc.CascadeError, match="CDM Region: .*weight must be finite"):
            CDMRegion().region(base, "cat", 0, 0, 1, 1, "fraction", float("nan"))
    finally:
        bridge.remove_stage_dir(tiny_cascade)


def test_workflow_10_runs_headless_on_tiny_stages(tiny_cascade, tmp_path):
    """The wide canvas: 16 x 48 through the SR stage to 32 x 96, four images."""
    from PIL import Image

    from nodes.run_workflow import main
    from tests.test_workflows import ROOT

    path = ROOT / "workflows" / "10_wide_canvas_regions.json"
    assert main([str(path), "--out", str(tmp_path), "--stages", str(tiny_cascade),
                 "--set", "steps=2"]) == 0
    saved = sorted((tmp_path / "cdm").glob("wide_*.png"))
    assert [Image.open(p).size for p in saved] == [(96, 32)] * 4
    previews = sorted((tmp_path / "previews").rglob("*.png"))
    assert {Image.open(p).size for p in previews} == {(48, 16)}


def test_sr_regions_take_their_crop_of_the_low_res_image():
    """One SR member over the canvas is plain super-resolution, bit for bit; two halves with
    their own classes each see their crop of the low-res handover."""
    sr = tiny_stage("sr", 16, 8, num_classes=3)
    low = cc.make_condition(torch.rand(1, 3, 8, 16) * 2 - 1, 0.1, 4)
    labels = torch.tensor([1])
    merged = generate_regions([Region(sr, labels)], plan(), canvas=(16, 32), batch=1, seed=2,
                              lowres=low)
    plain = cc.super_resolve(sr, plan(), cc.Conditioning.for_upsampling(low, labels), seed=2)
    assert torch.equal(merged, plain)
    halves = generate_regions([Region(sr, torch.tensor([0]), box=(0, 0, 16, 16)),
                               Region(sr, torch.tensor([2]), box=(0, 16, 16, 16))], plan(),
                              canvas=(16, 32), batch=1, seed=2, lowres=low)
    assert halves.shape == (1, 3, 16, 32) and bool(torch.isfinite(halves).all())
    with pytest.raises(cc.CascadeError, match="low-res grid"):
        generate_regions([Region(sr, labels, box=(0, 1, 16, 16)),
                          Region(sr, labels, box=(0, 16, 16, 16))], plan(), canvas=(16, 32),
                         batch=1, seed=2, lowres=low)
    with pytest.raises(cc.CascadeError, match="needs the low-res image"):
        generate_regions([Region(sr, labels)], plan(), canvas=(16, 32), batch=1, seed=2)


def test_the_sr_node_upsamples_a_canvas_region_by_region(tiny_cascade):
    from nodes import comfy_bridge as bridge
    from nodes.augment_nodes import CDMCondAugment
    from nodes.region_nodes import CDMRegion
    from nodes.sampling_nodes import CDMSuperResStage
    from nodes.stage_nodes import CDMStageLoader

    bridge.add_stage_dir(tiny_cascade)
    try:
        (sr,) = CDMStageLoader().load("cifar10-sr16to32.safetensors")
        (lowres,) = CDMCondAugment().augment(torch.rand(1, 16, 48, 3), 0.1, 0.0, 0)
        (regions,) = CDMRegion().region(sr, "airplane", 0, 0, 0.5, 1, "fraction", 1.0)
        (regions,) = CDMRegion().region(sr, "ship", 0.5, 0, 0.5, 1, "fraction", 1.0,
                                        regions=regions)
        (image,) = CDMSuperResStage().upscale(sr, lowres, seed=0, steps=2, sampler_name="euler",
                                              spacing="karras", class_name="from input",
                                              guidance=1.0, size_mismatch="error", dtype="fp32",
                                              regions=regions)
        assert image.shape == (1, 32, 96, 3) and bool(torch.isfinite(image).all())
    finally:
        bridge.remove_stage_dir(tiny_cascade)


class ClassColour(torch.nn.Module):
    """A stand-in network whose clean-image estimate is its class's colour, whatever the input:
    the merged estimate shows exactly where each member's class reaches."""

    COLOURS = torch.tensor([-0.8, 0.8, 0.1])

    def forward(self, zt, c_noise, cond=None, aug_level=None, labels=None):
        return self.COLOURS[labels].view(-1, 1, 1, 1).expand_as(zt).to(zt.dtype)


def colour_stage():
    stage = tiny_stage(resolution=8, num_classes=3, parameterization="x0")
    stage.net.forward = ClassColour().forward
    return stage


def test_regions_of_one_class_join_flat_and_of_two_classes_meet_at_an_edge():
    """Left box columns 0-19, right box 12-31 (an overlap of 8): each member's class reaches
    exactly its own columns; where both reach, the feathered weights turn one colour into the
    other monotonically; one class on both sides leaves no trace of the boundary."""
    stage = colour_stage()

    def run(left, right):
        return generate_regions([Region(stage, torch.tensor([left]), box=(0, 0, 8, 20)),
                                 Region(stage, torch.tensor([right]), box=(0, 12, 8, 20))],
                                plan("euler"), canvas=(8, 32), batch=1, seed=0)[0, 0, 0]
    flat, edge = run(0, 0), run(0, 1)
    assert float((flat - (-0.8)).abs().max()) < 1e-5
    assert torch.allclose(edge[:12], torch.tensor(-0.8)) and torch.allclose(
        edge[20:], torch.tensor(0.8))
    steps = edge[11:21].diff()
    assert bool((steps > 0).all()) and float(steps.max()) < 0.8  # a ramp, not a jump


def test_region_boundaries_leave_no_seams_on_a_crop_trained_stage():
    """The tiles' seam test with regions: the shipped refiner (trained on crops) refines blurred
    noise as nine 32 px regions laid out as the tiles are; across the region edges the gradient
    energy is within 10% of that elsewhere."""
    ref = cc.load_stage(WEIGHTS / "cifar10-refiner32.safetensors")
    img = content(16, 64)  # the seam bench's content, as large as two tiles
    origins = starts(64, 32, 8)
    regions = [Region(ref, box=(top, left, 32, 32)) for top in origins for left in origins]
    out = cc.refine(ref, cc.SamplingPlan(steps=6, start=cc.Start.partial(0.5)),
                    cc.Conditioning.for_refining(img, regions=regions), seed=0)
    edges = sorted({e for s in origins for e in (s, s + 32) if 0 < e < 64})
    assert edges == [24, 32, 56]
    ratio = boundary_energy_ratio(out, edges)
    assert abs(ratio - 1) < 0.10, ratio


def test_an_interrupt_lands_between_the_members_of_one_step(stage):
    """Three members of different sizes (three evaluations per step): an interrupt raised before
    the third stops the run inside the first step, before any step completes."""
    calls, steps = [], []

    def interrupt():
        calls.append(1)
        if len(calls) == 2:
            raise cc.SamplingInterrupted("stop")
    regions = [Region(stage, torch.tensor([0]), box=(0, 0, 8, 8)),
               Region(stage, torch.tensor([1]), box=(0, 4, 8, 12)),
               Region(stage, torch.tensor([2]), box=(0, 0, 8, 16))]
    with pytest.raises(cc.SamplingInterrupted):
        generate_regions(regions, plan(interrupt=interrupt, callback=steps.append),
                         canvas=(8, 16), batch=1, seed=0)
    assert len(calls) == 2 and steps == []


def test_if_stage_two_regions_crop_the_upsampled_noised_condition():
    """A stage that noises its input after upsampling (IF stage II): one member over the canvas
    is plain sampling bit for bit; halves each see their crop of the upsampled condition."""
    sr = tiny_stage("sr", 16, 8, num_classes=3, augmentation=cc.AugmentConfig(
        apply="upsampled", schedule="if_steps"))
    low = cc.make_condition(torch.rand(1, 3, 8, 16) * 2 - 1, 0.25, 4, schedule="if_steps")
    labels = torch.tensor([1])
    merged = generate_regions([Region(sr, labels)], plan(), canvas=(16, 32), batch=1, seed=2,
                              lowres=low)
    plain = cc.super_resolve(sr, plan(), cc.Conditioning.for_upsampling(low, labels), seed=2)
    assert torch.equal(merged, plain)
    halves = generate_regions([Region(sr, torch.tensor([0]), box=(0, 0, 16, 20)),
                               Region(sr, torch.tensor([2]), box=(0, 12, 16, 20))], plan(),
                              canvas=(16, 32), batch=1, seed=2, lowres=low)
    assert halves.shape == (1, 3, 16, 32) and not torch.equal(halves, plain)


def test_the_refiner_and_the_sr_stage_take_regions_and_follow_the_base_canvas(tiny_cascade):
    """The Refiner refines each region with its own member; an SR stage whose class is "from
    input" follows the regions a truncated base canvas hands over, and one of its own CDM Regions
    with "from input" takes the class of the low-res region under it."""
    from nodes import comfy_bridge as bridge
    from nodes.region_nodes import CDMRegion
    from nodes.sampling_nodes import CDMBaseSampler, CDMRefiner, CDMSuperResStage
    from nodes.stage_nodes import CDMStageLoader

    bridge.add_stage_dir(tiny_cascade)
    try:
        (base,) = CDMStageLoader().load("cifar10-base16.safetensors")
        (sr,) = CDMStageLoader().load("cifar10-sr16to32.safetensors")
        (ref,) = CDMStageLoader().load("cifar10-refiner32.safetensors")
        (regions,) = CDMRegion().region(base, "airplane", 0, 0, 20, 16, "pixels", 1.0)
        (regions,) = CDMRegion().region(base, "frog", 12, 0, 20, 16, "pixels", 1.0,
                                        regions=regions)
        _, low = CDMBaseSampler().sample(base, seed=0, steps=3, sampler_name="euler",
                                         spacing="karras", class_name="random", guidance=1.0,
                                         batch_size=2, truncate_s=0.15, dtype="fp32",
                                         regions=regions, canvas_width=32, canvas_height=16)
        kw = dict(seed=0, steps=2, sampler_name="euler", spacing="karras", guidance=1.0,
                  size_mismatch="error", dtype="fp32")
        (followed,) = CDMSuperResStage().upscale(sr, low, class_name="from input", **kw)
        (plain,) = CDMSuperResStage().upscale(sr, dataclasses.replace(low, regions=None),
                                              class_name="from input", **kw)
        assert followed.shape == (2, 32, 64, 3) and not torch.equal(followed, plain)
        (own,) = CDMRegion().region(sr, "from input", 0.5, 0, 0.5, 1, "fraction", 1.0)
        spec = own[0]
        got = spec.resolve(canvas=(32, 64), run=dict(batch=2, seed=0, lowres=low))
        assert got.labels.tolist() == [6, 6]  # frog: the low-res region under the right half
        (ref_regions,) = CDMRegion().region(ref, "unconditional", 0, 0, 0.75, 1, "fraction", 1.0)
        (ref_regions,) = CDMRegion().region(ref, "unconditional", 0.25, 0, 0.75, 1, "fraction",
                                            1.0, regions=ref_regions)
        (refined,) = CDMRefiner().refine(ref, followed, 0.3, 2, 0, "euler", "karras",
                                         "unconditional", 1.0, 0.05, "fp32",
                                         regions=ref_regions)
        assert refined.shape == followed.shape and bool(torch.isfinite(refined).all())
        with pytest.raises(cc.CascadeError, match="CDM Refiner: .*must lie inside"):
            CDMRefiner().refine(ref, followed, 0.3, 2, 0, "euler", "karras", "unconditional",
                                1.0, 0.05, "fp32", regions=CDMRegion().region(
                                    ref, "unconditional", 40, 0, 32, 32, "pixels", 1.0)[0])
    finally:
        bridge.remove_stage_dir(tiny_cascade)
