"""The Stage Inspector's numbers on constructed cases: identity, pure blur, a colour shift."""
from __future__ import annotations

import kornia
import pytest
import torch

import cascade_core as cc
from cascade_core.analysis.inspection import upsample
from nodes import NODE_CLASS_MAPPINGS
from nodes.images import to_comfy


@pytest.fixture(scope="module")
def low():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 16, 16, generator=g) * 2 - 1
    return kornia.filters.gaussian_blur2d(x, (5, 5), (1.0, 1.0)).clamp(-1, 1)


def up(low):
    return upsample(low, (32, 32))


def test_identity_is_consistent_and_adds_nothing(low):
    for r in cc.stage_report(low, up(low)):
        assert r.psnr > 40
        assert max(abs(d) for d in r.detail) < 1e-6
        assert max(abs(c) for c in r.colour_shift) < 5e-3


def test_pure_blur_removes_detail_in_every_band(low):
    blurred = kornia.filters.gaussian_blur2d(up(low), (7, 7), (1.5, 1.5))
    for r in cc.stage_report(low, blurred):
        assert all(d < 0 for d in r.detail[:-1])  # every band above the low-pass residual
        assert 25 < r.psnr < 40  # still roughly consistent with the input
        assert max(abs(c) for c in r.colour_shift) < 5e-3


def test_colour_shift_is_measured_and_breaks_consistency(low):
    shift = torch.tensor([0.2, -0.1, 0.0]).view(1, 3, 1, 1)
    for r in cc.stage_report(low, up(low) + shift):
        assert r.colour_shift == pytest.approx((0.2, -0.1, 0.0), abs=5e-3)
        assert r.psnr < 25
        assert max(abs(d) for d in r.detail[:-1]) < 1e-6  # no detail, only the mean moved


def test_added_noise_shows_in_the_finest_band(low):
    g = torch.Generator().manual_seed(1)
    noisy = up(low) + 0.1 * torch.randn(2, 3, 32, 32, generator=g)
    r = cc.stage_report(low, noisy)[0]
    assert r.detail[0] > 0.005 and r.detail[0] > 10 * abs(r.detail[-1])


def test_sizes_must_be_related_by_an_integer_factor(low):
    with pytest.raises(cc.CascadeError, match="not related by an integer factor"):
        cc.stage_report(low, torch.zeros(2, 3, 24, 24))
    with pytest.raises(cc.CascadeError, match="not related by an integer factor"):
        cc.stage_report(low, torch.zeros(2, 3, 32, 48))


def test_inspector_node_picture_and_report(low):
    node = NODE_CLASS_MAPPINGS["CDMStageInspector"]()
    out = node.inspect(to_comfy(low), to_comfy(up(low)), bands=3)
    picture, text = out["result"]
    assert picture.shape == (2, 32, 32 * 3 + 2 * 1, 3)
    assert text.startswith("x2: (16, 16) -> (32, 32)") and text.count("consistency") == 2
    assert out["ui"]["text"] == [text]
    heat = picture[:, :, -32:]  # identical images: the heat map is black
    assert heat.max() < 0.05
