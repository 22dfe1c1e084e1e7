import pytest
import torch
from helpers import tiny_stage

import cascade_core as cc

NO_ATTENTION = cc.UNetConfig(8, (1, 2), 1, attention_resolutions=(), num_heads=2)


def test_learned_variance_is_its_own_output_half():
    """A learned-variance stage outputs 2C channels: the prediction, then the variance
    interpolation; the head's last C filters feed only the second half."""
    s = tiny_stage(learn_sigma=True)
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([0.0, 999.0])
    with torch.no_grad():
        out = s(x, t)
        s.net.head[-1].weight[3:] += 0.5
        moved = s(x, t)
    assert out.shape == (2, 6, 8, 8)
    assert torch.equal(out[:, :3], moved[:, :3]) and not torch.allclose(out[:, 3:], moved[:, 3:])


def influence(stage, size, low_size, corner):
    """Mean |change| of the output in each quadrant (tl, tr, bl, br) when the low-res
    conditioning changes in one quadrant only: where the SR stage puts its input."""
    g = torch.Generator().manual_seed(0)
    (H, W), (h, w) = size, low_size
    x, c = torch.randn(1, 3, H, W, generator=g), torch.randn(1, 3, h, w, generator=g)
    bumped = c.clone()
    ys = slice(0, h // 2) if corner[0] == "t" else slice(h // 2, h)
    xs = slice(0, w // 2) if corner[1] == "l" else slice(w // 2, w)
    bumped[..., ys, xs] += 2.0
    with torch.no_grad():
        a = stage(x, torch.tensor([50.0]), c, torch.tensor([0.1]))
        b = stage(x, torch.tensor([50.0]), bumped, torch.tensor([0.1]))
    d = (a - b).abs().mean(dim=(0, 1))
    halves = {"t": d[:H // 2], "b": d[H // 2:]}
    return {v + u: float((halves[v][:, :W // 2] if u == "l" else halves[v][:, W // 2:]).mean())
            for v in "tb" for u in "lr"}


@pytest.mark.parametrize("low,high", [(8, 16), (4, 16)])
def test_sr_factors_put_the_conditioning_where_it_belongs(low, high):
    """At x2 and x4 a change of the low-res image in one quadrant changes the output mostly in
    the same quadrant of the upsampled image."""
    s = tiny_stage("sr", high, low, unet=NO_ATTENTION)
    for corner in ("tl", "br"):
        moved = influence(s, (high, high), (low, low), corner)
        assert max(moved, key=moved.get) == corner, moved
        assert moved[corner] > 1.5 * moved["br" if corner == "tl" else "tl"], moved


def test_sr_stage_at_another_size_keeps_its_input_in_place():
    """Trained at 16 px, run at 32x24: the output has the new size and a change of the input's
    top-right quadrant lands in the output's top-right quadrant."""
    s = tiny_stage("sr", 16, 8, unet=NO_ATTENTION)
    moved = influence(s, (32, 24), (16, 12), "tr")
    assert max(moved, key=moved.get) == "tr" and moved["tr"] > 1.5 * moved["bl"], moved


def test_conditioning_changes_output():
    s = tiny_stage("sr", 16, 8, num_classes=3)
    x, c = torch.randn(1, 3, 16, 16), torch.randn(1, 3, 8, 8)
    a = s(x, torch.tensor([5.0]), c, torch.tensor([0.1]), torch.tensor([0]))
    assert not torch.allclose(a,
                              s(x, torch.tensor([5.0]), -c, torch.tensor([0.1]), torch.tensor([0])))
    assert not torch.allclose(a,
                              s(x, torch.tensor([5.0]), c, torch.tensor([0.8]), torch.tensor([0])))
    assert not torch.allclose(a,
                              s(x, torch.tensor([5.0]), c, torch.tensor([0.1]), torch.tensor([-1])))


def test_attention_placed_at_requested_resolution():
    from cascade_core.models.unet import Attention
    with_attn = tiny_stage(unet=cc.UNetConfig(8, (1, 2), 1, attention_resolutions=(4,),
                                              num_heads=2))
    without = tiny_stage(unet=cc.UNetConfig(8, (1, 2), 1, attention_resolutions=(), num_heads=2))
    count = lambda m: sum(isinstance(x, Attention) for x in m.modules())  # noqa: E731
    assert count(with_attn) == count(without) + 3  # one down, two up blocks at 4x4; mid always


def test_config_validation():
    with pytest.raises(cc.CascadeError, match="upsamples"):
        cc.StageConfig(role="sr", resolution=16, low_res=16)
    with pytest.raises(cc.CascadeError, match="keeps its resolution"):
        cc.StageConfig(role="refiner", resolution=16, low_res=8)
    with pytest.raises(cc.CascadeError, match="divisible"):
        cc.StageConfig(resolution=10, unet=cc.UNetConfig(8, (1, 2, 2)))
    with pytest.raises(cc.CascadeError, match="class_names"):
        cc.StageConfig(num_classes=2, class_names=("a",))
    cfg = cc.StageConfig(role="sr", resolution=32, low_res=16, num_classes=2,
                         class_names=("x", "y"))
    assert cc.StageConfig.from_dict(cfg.to_dict()) == cfg
