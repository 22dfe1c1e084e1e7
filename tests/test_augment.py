import pytest
import torch

import cascade_core as cc
from cascade_core.process.augment import draw_training_augmentation
from cascade_core.run.handover import convert_level


def _img(n=8, size=16, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_level_zero_is_identity(schedule):
    x = _img()
    assert torch.equal(cc.noise_augment(x, 0.0, 1, schedule=schedule), x)


def test_level_one_is_unit_gaussian():
    x = torch.full((64, 3, 16, 16), 0.8)
    z = cc.noise_augment(x, 1.0, 3)
    assert abs(float(z.mean())) < 0.02 and float(z.std()) == pytest.approx(1.0, abs=0.02)


def test_intermediate_level_is_the_forward_process():
    x = torch.full((256, 3, 16, 16), 0.5)
    z = cc.noise_augment(x, 0.4, 5)
    abar = float(cc.aug_alpha_bar(torch.tensor(0.4)))
    assert float(z.mean()) == pytest.approx(abar ** 0.5 * 0.5, abs=0.01)
    assert float(z.var()) == pytest.approx(1 - abar, rel=0.03)


def test_alpha_bar_is_monotone_and_sigma_matches():
    s = torch.linspace(0, 1, 101)
    for sched in ("cosine", "linear"):
        a = cc.aug_alpha_bar(s, sched)
        assert float(a[0]) == 1.0 and bool((a[1:] < a[:-1]).all())
    abar = float(cc.aug_alpha_bar(torch.tensor(0.3)))
    assert cc.aug_sigma(0.3) == pytest.approx(((1 - abar) / abar) ** 0.5)


def test_per_image_levels_and_seeds():
    x = _img(3)
    z = cc.noise_augment(x, torch.tensor([0.0, 0.5, 0.9]), 11)
    assert torch.equal(z[0], x[0]) and not torch.allclose(z[1], x[1])
    # image i uses stream seed + i: a batch of one with seed 12 reproduces image 1
    alone = cc.noise_augment(x[1:2], 0.5, 12)
    assert torch.equal(alone[0], z[1])


def test_blur_sigma_zero_is_identity_and_blur_smooths():
    x = _img()
    assert torch.equal(cc.blur_augment(x, 0.0), x)
    b = cc.blur_augment(x, 0.6)
    hf = lambda t: float((t[..., 1:] - t[..., :-1]).abs().mean())  # noqa: E731
    assert hf(b) < 0.8 * hf(x)
    assert torch.allclose(b.mean(), x.mean(), atol=0.02)


def test_blur_applies_per_image():
    x = _img(2)
    b = cc.blur_augment(x, torch.tensor([0.0, 0.5]))
    assert torch.equal(b[0], x[0]) and not torch.equal(b[1], x[1])


def test_out_of_range_levels_raise():
    with pytest.raises(cc.CascadeError, match="out of range"):
        cc.noise_augment(_img(), 1.5, 0)
    with pytest.raises(cc.CascadeError, match="out of range"):
        cc.blur_augment(_img(), -0.1)
    with pytest.raises(cc.CascadeError, match="one augmentation value per image"):
        cc.noise_augment(_img(4), torch.tensor([0.1, 0.2]), 0)
    with pytest.raises(cc.CascadeError, match="augmentation schedule"):
        cc.noise_augment(_img(), 0.1, 0, schedule="sigmoid")


def test_training_draws_match_algorithm_1():
    g = torch.Generator().manual_seed(0)
    s, sigma = draw_training_augmentation(20000, 0.6, 0.5, blur_range=(0.4, 0.6), generator=g)
    assert float(s.min()) >= 0 and float(s.max()) <= 0.6
    assert float(s.mean()) == pytest.approx(0.3, abs=0.01)
    blurred = sigma > 0
    assert float(blurred.float().mean()) == pytest.approx(0.5, abs=0.02)
    assert float(sigma[blurred].min()) >= 0.4 and float(sigma[blurred].max()) <= 0.6


def test_convert_level_preserves_noise():
    s = torch.tensor([0.0, 0.1, 0.5, 0.9])
    s_lin = convert_level(s, "cosine", "linear")
    assert torch.allclose(cc.aug_alpha_bar(s_lin, "linear"), cc.aug_alpha_bar(s, "cosine"),
                          atol=1e-6)
