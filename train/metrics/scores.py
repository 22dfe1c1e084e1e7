"""FID, KID and sliced Wasserstein distance, computed from features or images (numpy/torch only)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


def gaussian_stats(feats: np.ndarray):
    f = np.asarray(feats, dtype=np.float64)
    return f.mean(0), np.cov(f, rowvar=False)


def _sqrtm_psd(a: torch.Tensor) -> torch.Tensor:
    w, v = torch.linalg.eigh((a + a.T) / 2)
    return (v * w.clamp(min=0).sqrt()) @ v.T


def fid_from_stats(mu1, sigma1, mu2, sigma2) -> float:
    """|mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)), with the trace term from the symmetric
    form sqrt(S1)^T S2 sqrt(S1), which has the same eigenvalues and stays real."""
    m1, m2 = torch.as_tensor(mu1, dtype=torch.float64), torch.as_tensor(mu2, dtype=torch.float64)
    s1 = torch.as_tensor(sigma1, dtype=torch.float64)
    s2 = torch.as_tensor(sigma2, dtype=torch.float64)
    r1 = _sqrtm_psd(s1)
    cross = torch.linalg.eigvalsh(r1 @ s2 @ r1).clamp(min=0).sqrt().sum()
    return float(((m1 - m2) ** 2).sum() + torch.trace(s1) + torch.trace(s2) - 2 * cross)


def fid(feats_a, feats_b) -> float:
    return fid_from_stats(*gaussian_stats(feats_a), *gaussian_stats(feats_b))


def kid(feats_a, feats_b, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance (Binkowski et al.): unbiased MMD^2 with the cubic polynomial
    kernel k(x, y) = (x.y / d + 1)^3, averaged over random subsets; returns (mean, std)."""
    a, b = np.asarray(feats_a, dtype=np.float64), np.asarray(feats_b, dtype=np.float64)
    m = min(len(a), len(b), subset_size)
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {len(a)} and {len(b)}")
    d, rng, values = a.shape[1], np.random.default_rng(seed), []
    for _ in range(subsets):
        x, y = a[rng.choice(len(a), m, replace=False)], b[rng.choice(len(b), m, replace=False)]
        kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
        within = (kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))
        mmd = within / (m * (m - 1)) - 2 * kxy.mean()
        values.append(mmd)
    return float(np.mean(values)), float(np.std(values))


def _laplacian_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    pyramid = []
    for _ in range(levels - 1):
        down = F.avg_pool2d(x, 2)
        pyramid.append(x - F.interpolate(down, scale_factor=2, mode="bilinear",
                                         align_corners=False))
        x = down
    return pyramid + [x]


def _patches(x: torch.Tensor, size: int, idx: torch.Tensor) -> torch.Tensor:
    cols = F.unfold(x, size)  # (N, C*size*size, L)
    picked = torch.gather(cols, 2, idx[:, None, :].expand(-1, cols.shape[1], -1))
    return picked.permute(0, 2, 1).reshape(-1, cols.shape[1])


@dataclass(frozen=True)
class SwdSettings:
    """Pyramid levels, patch side, patches drawn per image and random projections of the SWD."""

    levels: int = 3
    patch: int = 5
    per_image: int = 64
    projections: int = 128


def sliced_wasserstein(images_a: torch.Tensor, images_b: torch.Tensor,
                       settings: SwdSettings = SwdSettings(), seed: int = 0) -> list[float]:
    """SWD between Laplacian-pyramid patch distributions (Karras et al. 2018), one value per level
    (finest first), x1000. Needs no network weights: the cheap check for CI-sized tests."""
    levels, patch = settings.levels, settings.patch
    per_image, projections = settings.per_image, settings.projections
    g = torch.Generator().manual_seed(seed)
    a_pyr, b_pyr = _laplacian_pyramid(images_a.float(),
                                      levels), _laplacian_pyramid(images_b.float(), levels)
    out = []
    for la, lb in zip(a_pyr, b_pyr):
        k = min(patch, la.shape[-1], la.shape[-2])
        positions = (la.shape[-2] - k + 1) * (la.shape[-1] - k + 1)
        idx_a = torch.randint(positions, (la.shape[0], per_image), generator=g)
        # the same positions for both sets when they have the same shape: identical sets score 0
        idx_b = idx_a
        if lb.shape != la.shape:
            idx_b = torch.randint(positions, (lb.shape[0], per_image), generator=g)
        pa, pb = _patches(la, k, idx_a), _patches(lb, k, idx_b)
        n = min(len(pa), len(pb))
        pa, pb = pa[:n], pb[:n]
        mean, std = pa.mean(0), pa.std(0) + 1e-8  # normalise both by the first set's statistics
        pa, pb = (pa - mean) / std, (pb - mean) / std
        dirs = F.normalize(torch.randn(pa.shape[1], projections, generator=g), dim=0)
        proj_a, proj_b = (pa @ dirs).sort(0).values, (pb @ dirs).sort(0).values
        out.append(float((proj_a - proj_b).abs().mean()) * 1000)
    return out
