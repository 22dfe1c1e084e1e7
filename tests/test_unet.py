import pytest
import torch
from helpers import tiny_stage

import cascade_core as cc


def test_base_stage_shapes_and_learned_variance():
    s = tiny_stage(learn_sigma=True)
    out = s(torch.randn(2, 3, 8, 8), torch.tensor([0.0, 999.0]))
    assert out.shape == (2, 6, 8, 8)


@pytest.mark.parametrize("low,high", [(8, 16), (4, 16)])
def test_sr_factors(low, high):
    s = tiny_stage("sr", high, low, num_classes=2)
    out = s(torch.randn(2, 3, high, high), torch.tensor([5.0, 50.0]), torch.randn(2, 3, low, low),
            torch.tensor([0.0, 0.3]), torch.tensor([0, 1]))
    assert out.shape == (2, 3, high, high)


def test_sr_stage_runs_at_other_sizes():
    s = tiny_stage("sr", 16, 8)
    out = s(torch.randn(1, 3, 32, 24), torch.tensor([5.0]), torch.randn(1, 3, 16, 12),
            torch.tensor([0.1]))
    assert out.shape == (1, 3, 32, 24)


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
