"""The shallow-cascade networks behind the same Stage, checkpoint, pipeline and nodes."""
import pytest
import torch
import torch.nn.functional as F

import cascade_core as cc

SMALL = cc.ShallowConfig(hidden=16, blocks=1, patch=4, depth=1, heads=2, dae_steps=3)


def stage(network, role, res, low=0, perturb=True, **kw):
    torch.manual_seed(0)
    st = cc.Stage(cc.StageConfig(role=role, resolution=res, low_res=low, network=network,
                                 shallow=SMALL, **kw)).eval()
    if perturb:
        with torch.no_grad():
            for p in st.parameters():
                p.add_(torch.randn_like(p) * 0.02)
    return st


PLAN = cc.SamplingPlan()


def upsample(st, lowres, seed=0):
    return cc.super_resolve(st, PLAN, cc.Conditioning.for_upsampling(lowres), seed=seed)


def refine(st, img, strength):
    return cc.refine(st, cc.SamplingPlan(start=cc.Start.partial(strength)),
                     cc.Conditioning.for_refining(img), seed=0)


@pytest.mark.parametrize("network", ["pixelshuffle", "resnet"])
@pytest.mark.parametrize("low,high", [(8, 16), (8, 32)])
def test_one_pass_upsamplers_are_a_residual_over_the_clean_bilinear_image(network, low, high):
    """As initialised (zero last layer) a one-pass upsampler returns the bilinear upsampling of
    the clean low-res image, not of the augmented one that travels beside it."""
    st = stage(network, "sr", high, low=low, perturb=False)
    clean = torch.rand(2, 3, low, low) * 1.6 - 0.8
    out = upsample(st, cc.make_condition(clean, 0.2, 0))
    want = F.interpolate(clean, scale_factor=high // low, mode="bilinear", align_corners=False)
    assert out.shape == (2, 3, high, high)
    torch.testing.assert_close(out, want, atol=1e-6, rtol=0)


def test_one_pass_sr_ignores_seed_and_noise():
    st = stage("pixelshuffle", "sr", 16, low=8)
    img = torch.rand(2, 3, 8, 8) * 2 - 1
    a = upsample(st, cc.make_condition(img, 0.3, 0))
    b = upsample(st, cc.make_condition(img, 0.3, 1), seed=5)
    assert torch.equal(a, b)


@pytest.mark.parametrize("kind", ["conv", "vit"])
def test_one_pass_refiners_and_strength(kind):
    st = stage(kind, "refiner", 16, low=16)
    img = torch.rand(2, 3, 16, 16) * 2 - 1
    assert torch.equal(refine(st, img, 0.0), img)
    with torch.no_grad():
        raw = st.net(img)
    full, half = refine(st, img, 1.0), refine(st, img, 0.5)
    assert torch.allclose(full, raw.clamp(-1, 1), atol=1e-6)
    assert torch.allclose(half, (img + 0.5 * (raw - img)).clamp(-1, 1), atol=1e-6)


def test_vit_runs_at_other_sizes_and_checks_patches():
    st = stage("vit", "refiner", 16, low=16)
    assert refine(st, torch.zeros(1, 3, 32, 24), 1.0).shape == (1, 3, 32, 24)
    with pytest.raises(cc.CascadeError, match="multiples of 4"):
        refine(st, torch.zeros(1, 3, 30, 32), 1.0)


def test_dae_generates_by_seed_with_classes():
    st = stage("dae", "base", 16, num_classes=3)
    three = cc.Conditioning.for_base(3, torch.tensor([0, 1, 2]))
    a, cond = cc.generate(st, PLAN, three, seed=4)
    b, _ = cc.generate(st, PLAN, three, seed=4)
    c, _ = cc.generate(st, PLAN, three, seed=5)
    assert a.shape == (3, 3, 16, 16) and torch.equal(a, b) and not torch.equal(a, c)
    assert cond.labels.tolist() == [0, 1, 2]
    _, noisy = cc.generate(st, cc.SamplingPlan(start=cc.Start.truncated(0.3)), three, seed=4)
    assert torch.allclose(noisy.level, torch.full((3,), 0.3)) and noisy.labels.tolist() == [0, 1, 2]


def test_dae_loss_trains_towards_clean():
    """A few optimizer steps on the DAE loss bring its estimate of fixed noisy images closer to
    the clean ones; the estimate it returns is that of the same single evaluation."""
    st = stage("dae", "base", 8, num_classes=2).train()
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 3, 8, 8, generator=g) * 2 - 1
    noise, sigma = torch.randn(4, 3, 8, 8, generator=g), torch.full((4,), 0.5)
    labels = torch.tensor([0, 1, -1, 0])
    first = cc.dae_loss(st, x0, sigma, noise=noise, labels=labels)
    assert first["loss"].shape == (4,) and first["x0"].shape == x0.shape
    # the estimate is clamped to the data's range, which only brings it closer to the data
    clamped_error = ((first["x0"] - x0) ** 2).mean(dim=(1, 2, 3))
    assert bool((clamped_error <= first["loss"] + 1e-7).all())
    opt = torch.optim.Adam(st.parameters(), lr=3e-3)
    for _ in range(40):
        loss = cc.dae_loss(st, x0, sigma, noise=noise, labels=labels)["loss"].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = cc.dae_loss(st, x0, sigma, noise=noise, labels=labels)["loss"].mean()
    assert float(after) < 0.5 * float(first["loss"].mean())


@pytest.mark.parametrize("kind,role,res,low", [("dae", "base", 8, 0), ("pixelshuffle", "sr", 16, 8),
                                                ("resnet", "sr", 16, 8),
                                                ("conv", "refiner", 16, 16),
                                                ("vit", "refiner", 16, 16)])
def test_checkpoint_round_trip(tmp_path, kind, role, res, low):
    st = stage(kind, role, res, low=low)
    again = cc.load_stage(cc.save_stage(st, tmp_path / f"{kind}.safetensors"))
    assert again.config == st.config and again.config.network == kind
    a, b = st.state_dict(), again.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_network_must_fit_role():
    with pytest.raises(cc.CascadeError, match="cannot have a 'vit' network"):
        cc.StageConfig(role="sr", resolution=16, low_res=8, network="vit")
    with pytest.raises(cc.CascadeError, match="cannot have a 'dae' network"):
        cc.StageConfig(role="refiner", resolution=16, low_res=16, network="dae")


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
