import pytest
import torch
from helpers import tiny_stage

import cascade_core as cc
from cascade_core.run.handover import convert_level

Plan, Cond, Start = cc.SamplingPlan, cc.Conditioning, cc.Start


@pytest.fixture(scope="module")
def stages():
    names = ("cat", "dog", "ship")
    return {"base": tiny_stage(num_classes=3, class_names=names),
            "sr": tiny_stage("sr", 16, 8, num_classes=3, class_names=names, seed=1),
            "refiner": tiny_stage("refiner", 16, 16, seed=2)}


def base(stage, batch, seed, labels=None, **plan):
    return cc.generate(stage, Plan(**plan), Cond.for_base(batch, labels), seed=seed)


@pytest.mark.parametrize("sampler", sorted(cc.SAMPLERS))
def test_generate_shapes_range_and_seed(stages, sampler):
    labels = cc.parse_classes(stages["base"].config, "dog", 3)
    a, cond = base(stages["base"], 3, 5, labels=labels, steps=4, sampler=sampler)
    b, _ = base(stages["base"], 3, 5, labels=labels, steps=4, sampler=sampler)
    assert a.shape == (3, 3, 8, 8) and float(a.abs().max()) <= 1 and torch.equal(a, b)
    assert torch.equal(cond.level, torch.zeros(3))


def test_image_of_a_batch_reproduces_alone(stages):
    labels = torch.tensor([0, 1, 2])
    batch, _ = base(stages["base"], 3, 10, labels=labels, steps=4, sampler="ddpm")
    alone, _ = base(stages["base"], 1, 12, labels=labels[2:], steps=4, sampler="ddpm")
    assert torch.allclose(batch[2], alone[0], atol=1e-5)


def test_truncated_handover_carries_level(stages):
    img, cond = base(stages["base"], 2, 0, steps=6, start=Start.truncated(0.4))
    assert torch.allclose(cond.level, torch.full((2,), 0.4))
    assert cond.image.shape == (2, 3, 8, 8) and not torch.equal(cond.image, img)
    _, full = base(stages["base"], 2, 0, steps=6)
    assert not torch.equal(full.image, cond.image)


def test_guidance_scale_zero_is_unconditional(stages):
    uncond, _ = base(stages["base"], 2, 1, labels=torch.tensor([-1, -1]), steps=3, sampler="euler")
    g0, _ = base(stages["base"], 2, 1, labels=torch.tensor([0, 1]), steps=3, sampler="euler",
                 guidance=0.0)
    g1, _ = base(stages["base"], 2, 1, labels=torch.tensor([0, 1]), steps=3, sampler="euler",
                 guidance=1.0)
    assert torch.allclose(uncond, g0, atol=1e-5) and not torch.allclose(g0, g1)


def sr(stage, lowres, seed=1, steps=3):
    return cc.super_resolve(stage, Plan(steps=steps), Cond.for_upsampling(lowres), seed=seed)


def test_super_resolve_is_conditioned_on_the_image_and_its_level(stages):
    """The SR output is a function of the seed, the low-res image and its level s: the same
    three give the same image, changing any one changes it; the stage also runs recursively on
    its own output (a 16->32 stage taking 16 -> 32)."""
    _, cond = base(stages["base"], 2, 0, steps=3)
    low = cond.image
    hi = sr(stages["sr"], cc.make_condition(low, 0.1, 0))
    assert hi.shape == (2, 3, 16, 16) and float(hi.abs().max()) <= 1
    assert torch.equal(hi, sr(stages["sr"], cc.make_condition(low, 0.1, 0)))
    assert not torch.equal(hi, sr(stages["sr"], cc.make_condition(low, 0.1, 0), seed=2))
    assert not torch.equal(hi, sr(stages["sr"], cc.make_condition(-low, 0.1, 0)))
    same_noise = cc.make_condition(low, 0.1, 0)
    relabelled = cc.LowResCond(same_noise.image, torch.full((2,), 0.5))
    assert not torch.equal(hi, sr(stages["sr"], relabelled))  # only the s-embedding differs
    higher = sr(stages["sr"], cc.make_condition(hi, 0.1, 0))
    assert higher.shape == (2, 3, 32, 32)


def refined(stage, img, strength, steps=3, s=None, **plan):
    return cc.refine(stage, Plan(steps=steps, start=Start.partial(strength), **plan),
                     Cond.for_refining(img, s), seed=0)


def test_refine_strength(stages):
    img = torch.rand(2, 3, 16, 16) * 2 - 1
    assert torch.equal(refined(stages["refiner"], img, 0.0), img)
    out = refined(stages["refiner"], img, 0.5)
    assert out.shape == img.shape and not torch.equal(out, img)
    gentle = refined(stages["refiner"], img, 0.05)
    assert float((gentle - img).abs().mean()) < float((out - img).abs().mean())


def test_refiner_spacings_start_partway_down_their_own_full_grid(stages):
    """Every spacing gives its own partial grid, the last steps of its full grid (ComfyUI's
    BasicScheduler); karras runs from the start level itself; an unknown spacing is an error."""
    st = stages["refiner"]
    grids = {}
    for spacing in cc.SPACINGS:
        grid = cc.sigma_grid(Plan(steps=4, spacing=spacing, start=Start.partial(0.5)), st)
        grids[spacing] = grid.sigmas
        assert len(grid.sigmas) == 5 and float(grid.sigmas[-1]) == 0
        assert bool((grid.sigmas[1:] < grid.sigmas[:-1]).all())
        fraction = 0.5 * st.config.refiner_max_t
        top = float(st.schedule.t_to_sigma(torch.tensor(fraction * (st.schedule.T - 1))))
        if spacing == "karras":
            assert grid.start == top and float(grid.sigmas[0]) == pytest.approx(top)
        else:
            total = int(4 / fraction)
            full = cc.sampling_sigmas(st.schedule, total, spacing)
            assert torch.equal(grid.sigmas, full[-5:]) and grid.start == float(full[-5])
            assert 0.5 * top < grid.start <= 1.5 * top  # near the strength's level
    assert len({tuple(g.tolist()) for g in grids.values()}) == len(cc.SPACINGS)
    with pytest.raises(cc.CascadeError, match="unknown spacing"):
        Plan(steps=4, spacing="linear", start=Start.partial(0.5))
    with pytest.raises(cc.CascadeError, match="too many steps for a refiner"):
        cc.sigma_grid(Plan(steps=40, spacing="uniform", start=Start.partial(0.1)), st)


def test_wrong_stage_and_sizes_raise(stages):
    with pytest.raises(cc.CascadeError, match="needs a base stage"):
        base(stages["sr"], 1, 0, steps=2)
    with pytest.raises(cc.CascadeError, match="needs a sr stage"):
        sr(stages["base"], cc.make_condition(torch.zeros(1, 3, 8, 8), 0.1, 0))
    with pytest.raises(cc.CascadeError, match="multiples of 2"):
        refined(stages["refiner"], torch.zeros(1, 3, 15, 16), 0.5)
    with pytest.raises(cc.CascadeError, match="channel"):
        sr(stages["sr"], cc.make_condition(torch.zeros(1, 1, 8, 8), 0.1, 0))
    with pytest.raises(cc.CascadeError, match="out of range"):
        base(stages["base"], 1, 0, steps=2, start=Start.truncated(1.2))
    with pytest.raises(cc.CascadeError, match="truncate_s = 1 would hand the next stage pure"):
        base(stages["base"], 1, 0, steps=2, start=Start.truncated(1.0))
    with pytest.raises(cc.CascadeError, match="a sr stage cannot start 'partial'"):
        cc.super_resolve(stages["sr"], Plan(start=Start.partial(0.5)),
                         Cond.for_upsampling(cc.make_condition(torch.zeros(1, 3, 8, 8), 0, 0)),
                         seed=0)


def test_a_plan_names_the_setting_it_refuses():
    with pytest.raises(cc.CascadeError, match="unknown sampler.*'dpmpp'"):
        Plan(sampler="dpmpp")
    with pytest.raises(cc.CascadeError, match=r"unknown option\(s\) for the ddim sampler.*eta.*"
                                              r"\['etta'\]"):
        Plan(sampler="ddim", options={"etta": 0.5})
    with pytest.raises(cc.CascadeError, match="steps out of range"):
        Plan(steps=0)
    with pytest.raises(cc.CascadeError, match="guidance is out of range"):
        Plan(guidance=-1)
    with pytest.raises(cc.CascadeError, match="guidance must be a finite number"):
        Plan(guidance=float("inf"))
    with pytest.raises(cc.CascadeError, match="unknown precision"):
        Plan(precision="fp8")
    with pytest.raises(cc.CascadeError, match="unknown tiling"):
        Plan(tiling=0)
    with pytest.raises(cc.CascadeError, match="SIGMAS must be a descending list"):
        Plan(sigmas=[1.0, 2.0, 0.0])
    with pytest.raises(cc.CascadeError, match="one class index per image"):
        Cond.for_base(3, torch.tensor([0, 1]))


def test_parse_classes(stages):
    cfg = stages["base"].config
    assert cc.parse_classes(cfg, "ship", 2).tolist() == [2, 2]
    assert cc.parse_classes(cfg, "cat, 1, unconditional", 3).tolist() == [0, 1, -1]
    assert cc.parse_classes(cfg, "all classes", 6).tolist() == [0, 0, 1, 1, 2, 2]
    r = cc.parse_classes(cfg, "random", 50, seed=3)
    assert r.min() >= 0 and r.max() <= 2
    assert torch.equal(r, cc.parse_classes(cfg, "random", 50, seed=3))
    with pytest.raises(cc.CascadeError, match="unknown class 'horse'.*cat"):
        cc.parse_classes(cfg, "horse", 1)
    with pytest.raises(cc.CascadeError, match="one per image"):
        cc.parse_classes(cfg, "cat,dog", 3)
    assert cc.parse_classes(stages["refiner"].config, "unconditional", 2) is None


def test_bf16_inference_is_bf16_where_native_and_refused_elsewhere(stages):
    """bf16 changes the numbers a little (so it really ran in bf16) without changing the
    picture; a CPU without native bf16 refuses it by name instead of crawling."""
    if "bf16" not in cc.precision.native_dtypes("cpu"):
        with pytest.raises(cc.CascadeError, match="bf16 is not computed natively"):
            base(stages["base"], 1, 0, steps=3, sampler="euler", precision="bf16")
        return
    a, _ = base(stages["base"], 1, 0, steps=3, sampler="euler", precision=torch.bfloat16)
    b, _ = base(stages["base"], 1, 0, steps=3, sampler="euler")
    assert a.dtype == torch.float32 and 0 < float((a - b).abs().max()) < 0.2


def test_level_conversion_between_schedules_round_trips():
    s = torch.tensor([0.05, 0.3, 0.7])
    back = convert_level(convert_level(s, "cosine", "linear"), "linear", "cosine")
    assert torch.allclose(back, s, atol=1e-5)


def test_ddpm_uses_the_learned_variance_when_there_is_one():
    learned = tiny_stage(learn_sigma=True)
    a, _ = base(learned, 2, 0, steps=5, sampler="ddpm", spacing="uniform")
    b, _ = base(learned, 2, 0, steps=5, sampler="ddpm", spacing="uniform",
                options={"variance": "small"})
    assert a.shape == b.shape and not torch.equal(a, b)
    with pytest.raises(cc.CascadeError, match="does not learn it"):
        base(tiny_stage(), 1, 0, steps=3, sampler="ddpm", options={"variance": "learned"})


def test_each_network_has_its_strategy_in_the_table():
    from cascade_core.run.strategies import STRATEGIES, Diffusion, OnePass, WalkBack, strategy_for

    want = {"unet": Diffusion, "dae": WalkBack, "pixelshuffle": OnePass, "resnet": OnePass,
            "conv": OnePass, "vit": OnePass}
    assert set(STRATEGIES) == {"diffusion", "dae", "one_pass"}
    for role, networks in cc.NETWORKS_BY_ROLE.items():
        for network in networks:
            res, low = {"base": (8, 0), "sr": (16, 8), "refiner": (16, 16)}[role]
            cfg = cc.StageConfig(role=role, resolution=res, low_res=low, network=network,
                                 unet=cc.UNetConfig(8, (1, 2), 1, (), 2),
                                 shallow=cc.ShallowConfig(hidden=8, blocks=1, depth=1, heads=2))
            stage = cc.Stage(cfg)
            assert type(stage) is cc.Stage and type(strategy_for(stage)) is want[network]


def test_a_strategy_refuses_what_its_method_cannot_do():
    from cascade_core.run.strategies import OnePass

    st = tiny_stage("sr", 16, 8)
    with pytest.raises(cc.CascadeError, match="a one-pass stage cannot generate"):
        OnePass().base(st, Plan(), Cond.for_base(1), seed=0)
