"""A run's cost, said before it starts: counted evaluations, tiles and FLOPs, rough seconds."""
import logging

import pytest
import torch
from helpers import tiny_stage

import cascade_core as cc
from cascade_core.run import cost


def test_flops_follow_the_area_and_the_batch():
    stage = tiny_stage()
    one = cost.evaluation_flops(stage, (1, 16, 16))
    assert one > 0
    assert cost.evaluation_flops(stage, (2, 16, 16)) == pytest.approx(2 * one, rel=0.01)
    # 4x the pixels: 4x the convolutions, and attention's square grows 16x
    assert 4 * one < cost.evaluation_flops(stage, (1, 32, 32)) < 16 * one


def test_evaluations_tiles_and_seconds(monkeypatch):
    stage = tiny_stage()
    monkeypatch.setattr(cost, "conv_throughput", lambda device, dtype: 1e9)
    monkeypatch.setattr(cost, "QUICK_FLOPS", 0)
    c = cost.run_cost(stage, cc.SamplingPlan(steps=10, sampler="heun"), (1, 3, 16, 16))
    assert (c.evaluations, c.tiles) == (19, 1)  # heun: two per step, one at the last
    assert c.seconds == pytest.approx(19 * c.flops_per_tile / (1e9 * cost.EFFICIENCY[
        torch.float32]))
    tiled = cost.run_cost(stage, cc.SamplingPlan(steps=10, tiling=16), (1, 3, 64, 64))
    assert tiled.tiles > 4 and tiled.flops_per_tile == pytest.approx(
        cost.evaluation_flops(stage, (1, 16, 16)))
    assert "tiles x 10 evaluations" in tiled.text("CPU") and "on this CPU" in tiled.text("CPU")


def test_a_small_run_is_not_timed_and_a_long_one_warns(monkeypatch, caplog):
    from nodes.cost_notice import announce
    stage = tiny_stage()
    measured = []
    monkeypatch.setattr(cost, "conv_throughput", lambda d, t: measured.append(1) or 1e6)
    with caplog.at_level(logging.INFO):
        text = announce("CDM Refiner", stage, cc.SamplingPlan(steps=2), shape=(1, 3, 16, 16))
    assert text.startswith("CDM Refiner: a few seconds") and measured == []
    monkeypatch.setattr(cost, "QUICK_FLOPS", 0)
    with caplog.at_level(logging.INFO):
        text = announce("CDM Refiner", stage, cc.SamplingPlan(steps=200),
                        shape=(4, 3, 64, 64))
    assert "about" in text and measured
    assert any(r.levelno == logging.WARNING and "a long run" in r.message for r in caplog.records)


def test_shallow_networks_cost_one_untimed_pass():
    stage = cc.Stage(cc.StageConfig(role="sr", resolution=16, low_res=8, network="pixelshuffle"))
    c = cost.run_cost(stage, cc.SamplingPlan(steps=30), (2, 3, 16, 16))
    assert (c.evaluations, c.tiles, c.seconds) == (1, 1, None)
