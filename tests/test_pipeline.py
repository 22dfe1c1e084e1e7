import pytest
import torch
from helpers import tiny_stage

import cascade_core as cc
from cascade_core.pipeline import convert_level


@pytest.fixture(scope="module")
def stages():
    names = ("cat", "dog", "ship")
    return {"base": tiny_stage(num_classes=3, class_names=names),
            "sr": tiny_stage("sr", 16, 8, num_classes=3, class_names=names, seed=1),
            "refiner": tiny_stage("refiner", 16, 16, seed=2)}


@pytest.mark.parametrize("sampler", sorted(cc.SAMPLERS))
def test_generate_shapes_range_and_seed(stages, sampler):
    labels = cc.parse_classes(stages["base"].config, "dog", 3)
    a, cond = cc.generate(stages["base"], 3, seed=5, steps=4, sampler=sampler, labels=labels)
    b, _ = cc.generate(stages["base"], 3, seed=5, steps=4, sampler=sampler, labels=labels)
    assert a.shape == (3, 3, 8, 8) and float(a.abs().max()) <= 1 and torch.equal(a, b)
    assert torch.equal(cond.level, torch.zeros(3))


def test_image_of_a_batch_reproduces_alone(stages):
    labels = torch.tensor([0, 1, 2])
    batch, _ = cc.generate(stages["base"], 3, seed=10, steps=4, sampler="ddpm", labels=labels)
    alone, _ = cc.generate(stages["base"], 1, seed=12, steps=4, sampler="ddpm", labels=labels[2:])
    assert torch.allclose(batch[2], alone[0], atol=1e-5)


def test_truncated_handover_carries_level(stages):
    img, cond = cc.generate(stages["base"], 2, seed=0, steps=6, truncate_s=0.4)
    assert torch.allclose(cond.level, torch.full((2,), 0.4))
    assert cond.image.shape == (2, 3, 8, 8) and not torch.equal(cond.image, img)
    _, full = cc.generate(stages["base"], 2, seed=0, steps=6)
    assert not torch.equal(full.image, cond.image)


def test_guidance_scale_zero_is_unconditional(stages):
    base = stages["base"]
    uncond, _ = cc.generate(base, 2, seed=1, steps=3, sampler="euler",
                            labels=torch.tensor([-1, -1]))
    g0, _ = cc.generate(base, 2, seed=1, steps=3, sampler="euler", labels=torch.tensor([0, 1]),
                        guidance=0.0)
    g1, _ = cc.generate(base, 2, seed=1, steps=3, sampler="euler", labels=torch.tensor([0, 1]),
                        guidance=1.0)
    assert torch.allclose(uncond, g0, atol=1e-5) and not torch.allclose(g0, g1)


def test_super_resolve_and_recursive_chain(stages):
    _, cond = cc.generate(stages["base"], 2, seed=0, steps=3)
    hi = cc.super_resolve(stages["sr"], cc.make_condition(cond.image, 0.1, 0), seed=1, steps=3)
    assert hi.shape == (2, 3, 16, 16)
    higher = cc.super_resolve(stages["sr"], cc.make_condition(hi, 0.1, 0), seed=1, steps=3)
    assert higher.shape == (2, 3, 32, 32)


def test_refine_strength(stages):
    img = torch.rand(2, 3, 16, 16) * 2 - 1
    assert torch.equal(cc.refine(stages["refiner"], img, strength=0.0, seed=0), img)
    out = cc.refine(stages["refiner"], img, strength=0.5, seed=0, steps=3)
    assert out.shape == img.shape and not torch.equal(out, img)


def test_wrong_stage_and_sizes_raise(stages):
    with pytest.raises(cc.CascadeError, match="needs a base stage"):
        cc.generate(stages["sr"], 1, seed=0, steps=2)
    with pytest.raises(cc.CascadeError, match="needs a sr stage"):
        cc.super_resolve(stages["base"], cc.make_condition(torch.zeros(1, 3, 8, 8), 0.1, 0), seed=0)
    with pytest.raises(cc.CascadeError, match="multiples of 2"):
        cc.refine(stages["refiner"], torch.zeros(1, 3, 15, 16), strength=0.5, seed=0)
    with pytest.raises(cc.CascadeError, match="channel"):
        cc.super_resolve(stages["sr"], cc.make_condition(torch.zeros(1, 1, 8, 8), 0.1, 0), seed=0)
    with pytest.raises(cc.CascadeError, match="out of range"):
        cc.generate(stages["base"], 1, seed=0, steps=2, truncate_s=1.2)
    with pytest.raises(cc.CascadeError, match="truncate_s = 1 would hand the next stage pure"):
        cc.generate(stages["base"], 1, seed=0, steps=2, truncate_s=1.0)


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


def test_bf16_inference_runs(stages):
    a, _ = cc.generate(stages["base"], 1, seed=0, steps=3, sampler="euler", dtype=torch.bfloat16)
    b, _ = cc.generate(stages["base"], 1, seed=0, steps=3, sampler="euler")
    assert a.dtype == torch.float32 and float((a - b).abs().max()) < 0.2


def test_level_conversion_between_schedules_round_trips():
    s = torch.tensor([0.05, 0.3, 0.7])
    back = convert_level(convert_level(s, "cosine", "linear"), "linear", "cosine")
    assert torch.allclose(back, s, atol=1e-5)


def test_ddpm_uses_the_learned_variance_when_there_is_one():
    learned = tiny_stage(learn_sigma=True)
    a, _ = cc.generate(learned, 2, seed=0, steps=5, sampler="ddpm", spacing="uniform")
    b, _ = cc.generate(learned, 2, seed=0, steps=5, sampler="ddpm", spacing="uniform",
                       variance="small")
    assert a.shape == b.shape and not torch.equal(a, b)
    with pytest.raises(cc.CascadeError, match="does not learn it"):
        cc.generate(tiny_stage(), 1, seed=0, steps=3, sampler="ddpm", variance="learned")


def test_stage_builds_the_class_of_its_kind_and_copies_keep_it():
    import copy

    from cascade_core.kinds import DaeStage, DiffusionStage, OnePassStage

    want = {"diffusion": DiffusionStage, "dae": DaeStage, "pixelshuffle": OnePassStage,
            "resnet": OnePassStage, "conv": OnePassStage, "vit": OnePassStage}
    for role, kinds in cc.KINDS.items():
        for kind in kinds:
            res, low = {"base": (8, 0), "sr": (16, 8), "refiner": (16, 16)}[role]
            cfg = cc.StageConfig(role=role, resolution=res, low_res=low, kind=kind,
                                 unet=cc.UNetConfig(8, (1, 2), 1, (), 2),
                                 shallow=cc.ShallowConfig(hidden=8, blocks=1, depth=1, heads=2))
            stage = cc.Stage(cfg)
            assert type(stage) is want[kind] and isinstance(stage, cc.Stage)
            assert type(copy.deepcopy(stage)) is want[kind]


def test_a_stage_refuses_what_its_kind_cannot_do():
    st = tiny_stage("sr", 16, 8)  # one-pass and diffusion SR stages inherit the refusal
    with pytest.raises(cc.CascadeError, match="cannot generate"):
        cc.Stage.sample_base(st, batch=1, seed=0, plan=cc.SamplingPlan(), labels=None,
                             truncate_s=0.0, aug_schedule="cosine")
