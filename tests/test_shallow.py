"""The shallow-cascade stage kinds behind the same Stage, checkpoint, pipeline and nodes."""
import pytest
import torch

import cascade_core as cc

SMALL = cc.ShallowConfig(hidden=16, blocks=1, patch=4, depth=1, heads=2, dae_steps=3)


def stage(kind, role, res, low=0, **kw):
    torch.manual_seed(0)
    st = cc.Stage(cc.StageConfig(role=role, resolution=res, low_res=low, kind=kind, shallow=SMALL,
                                 **kw)).eval()
    with torch.no_grad():
        for p in st.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return st


@pytest.mark.parametrize("kind", ["pixelshuffle", "resnet"])
@pytest.mark.parametrize("low,high", [(8, 16), (8, 32)])
def test_one_pass_upsamplers(kind, low, high):
    st = stage(kind, "sr", high, low=low)
    out = cc.super_resolve(st, cc.make_condition(torch.rand(2, 3, low, low) * 2 - 1, 0.2, 0),
                           seed=0)
    assert out.shape == (2, 3, high, high) and float(out.abs().max()) <= 1


def test_one_pass_sr_ignores_seed_and_noise():
    st = stage("pixelshuffle", "sr", 16, low=8)
    img = torch.rand(2, 3, 8, 8) * 2 - 1
    a = cc.super_resolve(st, cc.make_condition(img, 0.3, 0), seed=0)
    b = cc.super_resolve(st, cc.make_condition(img, 0.3, 1), seed=5)
    assert torch.equal(a, b)


@pytest.mark.parametrize("kind", ["conv", "vit"])
def test_one_pass_refiners_and_strength(kind):
    st = stage(kind, "refiner", 16, low=16)
    img = torch.rand(2, 3, 16, 16) * 2 - 1
    assert torch.equal(cc.refine(st, img, strength=0.0, seed=0), img)
    with torch.no_grad():
        raw = st.net(img)
    full, half = cc.refine(st, img, strength=1.0, seed=0), cc.refine(st, img, strength=0.5, seed=0)
    assert torch.allclose(full, raw.clamp(-1, 1), atol=1e-6)
    assert torch.allclose(half, (img + 0.5 * (raw - img)).clamp(-1, 1), atol=1e-6)


def test_vit_runs_at_other_sizes_and_checks_patches():
    st = stage("vit", "refiner", 16, low=16)
    assert cc.refine(st, torch.zeros(1, 3, 32, 24), strength=1.0, seed=0).shape == (1, 3, 32, 24)
    with pytest.raises(cc.CascadeError, match="multiples of 4"):
        cc.refine(st, torch.zeros(1, 3, 30, 32), strength=1.0, seed=0)


def test_dae_generates_by_seed_with_classes():
    st = stage("dae", "base", 16, num_classes=3)
    a, cond = cc.generate(st, 3, seed=4, labels=torch.tensor([0, 1, 2]))
    b, _ = cc.generate(st, 3, seed=4, labels=torch.tensor([0, 1, 2]))
    c, _ = cc.generate(st, 3, seed=5, labels=torch.tensor([0, 1, 2]))
    assert a.shape == (3, 3, 16, 16) and torch.equal(a, b) and not torch.equal(a, c)
    assert cond.labels.tolist() == [0, 1, 2]
    _, noisy = cc.generate(st, 3, seed=4, labels=torch.tensor([0, 1, 2]), truncate_s=0.3)
    assert torch.allclose(noisy.level, torch.full((3,), 0.3)) and noisy.labels.tolist() == [0, 1, 2]


def test_dae_loss_trains_towards_clean():
    st = stage("dae", "base", 8, num_classes=2)
    x0 = torch.rand(4, 3, 8, 8) * 2 - 1
    loss = cc.dae_loss(st, x0, torch.full((4,), 0.5), noise=torch.randn_like(x0),
                       labels=torch.tensor([0, 1, -1, 0]))
    assert loss.shape == (4,)
    loss.mean().backward()
    assert all(p.grad is not None for p in st.parameters())


@pytest.mark.parametrize("kind,role,res,low", [("dae", "base", 8, 0), ("pixelshuffle", "sr", 16, 8),
                                                ("resnet", "sr", 16, 8),
                                                ("conv", "refiner", 16, 16),
                                                ("vit", "refiner", 16, 16)])
def test_checkpoint_round_trip(tmp_path, kind, role, res, low):
    st = stage(kind, role, res, low=low)
    again = cc.load_stage(cc.save_stage(st, tmp_path / f"{kind}.safetensors"))
    assert again.config == st.config and again.config.kind == kind
    a, b = st.state_dict(), again.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_kind_must_fit_role():
    with pytest.raises(cc.CascadeError, match="cannot be of kind 'vit'"):
        cc.StageConfig(role="sr", resolution=16, low_res=8, kind="vit")
    with pytest.raises(cc.CascadeError, match="cannot be of kind 'dae'"):
        cc.StageConfig(role="refiner", resolution=16, low_res=16, kind="dae")


def test_nodes_run_one_pass_stages(tmp_path):
    from nodes import NODE_CLASS_MAPPINGS
    from nodes import comfy_bridge as bridge
    from nodes.stage_nodes import load
    cc.save_stage(stage("pixelshuffle", "sr", 16, low=8), tmp_path / "ps.safetensors")
    cc.save_stage(stage("vit", "refiner", 16, low=16), tmp_path / "vit.safetensors")
    bridge.add_stage_dir(tmp_path)
    low = NODE_CLASS_MAPPINGS["CDMCondAugment"]().augment(torch.rand(2, 8, 8, 3), 0.1, 0.0,
                                                          seed=0)[0]
    (up,) = NODE_CLASS_MAPPINGS["CDMSuperResStage"]().upscale(
        load("ps.safetensors"), low, seed=0, steps=30, sampler_name="dpmpp_2m", spacing="karras",
        class_name="unconditional", guidance=1.0, size_mismatch="error", dtype="fp32")
    (ref,) = NODE_CLASS_MAPPINGS["CDMRefiner"]().refine(
        load("vit.safetensors"), up, strength=1.0, steps=10, seed=0, sampler_name="dpmpp_2m",
        spacing="karras", class_name="unconditional", guidance=1.0, s=0.05, dtype="fp32")
    assert up.shape == ref.shape == (2, 16, 16, 3)
