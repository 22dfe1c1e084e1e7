"""Parallel cascades: regions of one canvas merged at every evaluation (``run.regions``)."""
import pytest
import torch

import cascade_core as cc
from cascade_core.run.regions import Region, generate_regions
from tests.helpers import tiny_stage


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
    labels = torch.tensor([1])
    one = generate_regions([Region(stage, labels)], plan(), canvas=(8, 16), batch=1, seed=0)
    two = generate_regions([Region(stage, labels), Region(stage, labels)], plan(),
                           canvas=(8, 16), batch=1, seed=0)
    other = Region(stage, torch.tensor([2]), box=(0, 0, 8, 8), weight=0.0)
    zero = generate_regions([Region(stage, labels), other], plan(), canvas=(8, 16), batch=1,
                            seed=0)
    assert one.shape == (1, 3, 8, 16) and torch.equal(one, two) and torch.equal(one, zero)


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
        with pytest.raises(cc.CascadeError, match="regions sample the whole reverse process"):
            CDMBaseSampler().sample(base, seed=0, steps=3, sampler_name="euler",
                                    spacing="karras", class_name="random", guidance=1.0,
                                    batch_size=1, truncate_s=0.2, dtype="fp32",
                                    regions=CDMRegion().region(base, "cat", 0, 0, 1, 1,
                                                               "fraction", 1.0)[0])
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
