import numpy as np
import pytest
import torch

from cascade_core import blur_augment
from train.metrics.scores import fid, fid_from_stats, kid, sliced_wasserstein


def test_fid_of_identical_sets_is_zero():
    f = np.random.default_rng(0).normal(size=(500, 16))
    assert fid(f, f) == pytest.approx(0.0, abs=1e-8)


def test_fid_matches_closed_form_for_gaussians():
    # diagonal covariances: FID = |dmu|^2 + sum (sqrt(a) - sqrt(b))^2
    mu1, mu2 = np.zeros(4), np.array([1.0, -2.0, 0.5, 0.0])
    a, b = np.array([1.0, 4.0, 0.25, 2.0]), np.array([4.0, 1.0, 1.0, 2.0])
    want = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert fid_from_stats(mu1, np.diag(a), mu2, sigma2=np.diag(b)) == pytest.approx(want, rel=1e-9)
    # non-diagonal, rotated: FID is invariant to a shared rotation
    q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(4, 4)))
    assert fid_from_stats(q @ mu1, q @ np.diag(a) @ q.T, q @ mu2,
                          sigma2=q @ np.diag(b) @ q.T) == pytest.approx(want, rel=1e-7)


def test_fid_of_sampled_shifted_gaussians():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(20000, 3)), rng.normal(size=(20000, 3)) + np.array([1.0, 0.0, 0.0])
    assert fid(x, y) == pytest.approx(1.0, abs=0.05)


def test_kid_zero_for_same_distribution_and_grows_with_shift():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(600, 8)), rng.normal(size=(600, 8))
    same, same_std = kid(x, y, subsets=20, subset_size=300)
    shifted, _ = kid(x, y + 0.5, subsets=20, subset_size=300)
    assert abs(same) < 3 * same_std + 1e-3 and shifted > same + 10 * same_std
    with pytest.raises(ValueError):
        kid(x[:1], y)


def _textures(n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 32, 32, generator=g) * 2 - 1
    return torch.nn.functional.avg_pool2d(x, 3, 1, 1)  # some correlation, still lots of detail


def test_swd_blur_makes_it_worse():
    real, other = _textures(64, 0), _textures(64, 1)
    same = sliced_wasserstein(real, other)
    blurred = sliced_wasserstein(real, blur_augment(other, 1.5))
    assert len(same) == 3 and blurred[0] > 2 * same[0]


def test_swd_identical_is_zero():
    x = _textures(16, 0)
    assert max(sliced_wasserstein(x, x)) == pytest.approx(0.0, abs=1e-6)
