"""What a sampling run will cost, said before it starts.

A run's cost is its network evaluations (the sampler's count for the steps,
twice the batch under classifier-free guidance) times the tiles of each
evaluation times one tile's FLOPs, counted by PyTorch's flop counter on the
``meta`` device (shapes only: nothing is computed or allocated). Seconds come
from this device's measured 3x3-convolution throughput in the run's precision
and the share of it a U-Net reaches on large inputs (``EFFICIENCY``, from
``bench/RESULTS.md``: 40-50 % in fp32, 30-45 % in bf16 at batch 16+), so they are
rough: within about a factor of two. Runs under ``QUICK_FLOPS`` are not timed at
all; they take seconds.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..models.stage import Stage
from ..process.samplers import evaluations
from .pipeline import check_size
from .tiling import plan_tiles, starts

EFFICIENCY = {torch.float32: 0.4, torch.bfloat16: 0.3, torch.float16: 0.3}
QUICK_FLOPS = 2e11  # a few seconds even on a laptop CPU
LONG_SECONDS = 60.0  # a run this long gets a warning, not only a line in the log


@dataclass(frozen=True)
class RunCost:
    """Network evaluations, tiles per evaluation, FLOPs per tile and the estimated seconds."""

    evaluations: int
    tiles: int
    flops_per_tile: float
    seconds: float | None  # None: too small to be worth timing

    @property
    def long(self) -> bool:
        """Long enough to warn about."""
        return self.seconds is not None and self.seconds >= LONG_SECONDS

    def text(self, device: str) -> str:
        """``about 19 min on this CPU: 256 tiles x 40 evaluations of 11.7 GFLOP``."""
        work = (f"{self.tiles} tile{'s' if self.tiles > 1 else ''} x {self.evaluations} "
                f"evaluations of {self.flops_per_tile / 1e9:,.1f} GFLOP")
        if self.seconds is None:
            return f"a few seconds: {work}"
        return f"about {_duration(self.seconds)} on this {device}: {work}"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


_flop_cache: dict[tuple, float] = {}


def evaluation_flops(stage: Stage, size: tuple) -> float:
    """FLOPs of one network evaluation on an input of ``size`` (batch, height, width), cached
    by the architecture and the size."""
    cfg = stage.config
    arch = {k: v for k, v in cfg.to_dict().items() if k != "training"}
    key = (json.dumps(arch, sort_keys=True, default=str), *size)
    if key not in _flop_cache:
        _flop_cache[key] = _flops(cfg, size)
    return _flop_cache[key]


def _flops(cfg, size: tuple) -> float:
    batch, height, width = size
    with torch.device("meta"):
        net = Stage(cfg)
        x = torch.zeros(batch, cfg.channels, height, width)
        t = torch.zeros(batch)
        extra = {}
        if cfg.conditioned:
            extra = {"cond": torch.zeros(batch, cfg.channels, height // cfg.factor,
                                         width // cfg.factor), "aug_level": torch.zeros(batch)}
        if cfg.num_classes:
            extra["labels"] = torch.zeros(batch, dtype=torch.long)
        if cfg.text.width:
            extra["text"] = torch.zeros(batch, cfg.text.max_tokens, cfg.text.width)
        with FlopCounterMode(display=False) as counter:
            net(x, t, **extra)
    return float(counter.get_total_flops())


@lru_cache(maxsize=8)
def conv_throughput(device: str, dtype: torch.dtype) -> float:
    """This device's measured FLOP/s for a 3x3 convolution of 128 channels at 32x32, batch 8,
    in ``dtype`` (best of three, after a warm-up)."""
    conv = torch.nn.Conv2d(128, 128, 3, padding=1).to(device)
    x = torch.randn(8, 128, 32, 32, device=device)
    flops = 2 * 8 * 32 * 32 * 128 * 128 * 9
    best = float("inf")
    for k in range(4):
        t0 = time.perf_counter()
        with torch.inference_mode(), torch.autocast(torch.device(device).type, dtype=dtype,
                                                    enabled=dtype != torch.float32):
            conv(x)
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
        if k:
            best = min(best, time.perf_counter() - t0)
    return flops / best


def run_cost(stage: Stage, plan, shape, *, dtype: torch.dtype = torch.float32) -> RunCost:
    """The cost of sampling an output of ``shape`` (B, C, H, W) with ``plan``."""
    B, _, H, W = shape
    check_size(stage, H, W, what="output")  # a size the network cannot take costs nothing
    if stage.config.network != "unet":  # the shallow recipe's networks: one pass, milliseconds
        return RunCost(1, 1, 0.0, None)
    steps = plan.steps if plan.sigmas is None else len(plan.sigmas) - 1
    name = plan.sampler if isinstance(plan.sampler, str) else "euler"
    count = evaluations(name, int(steps))
    batch = B * (2 if plan.guidance != 1.0 and stage.config.num_classes else 1)
    tiles = plan_tiles(stage, shape, plan.tiling)
    if tiles is None:
        th, tw, n = H, W, 1
    else:
        th, tw = min(tiles.tile, H), min(tiles.tile, W)
        n = len(starts(H, th, tiles.overlap)) * len(starts(W, tw, tiles.overlap))
    per_tile = evaluation_flops(stage, (batch, th, tw))
    total = per_tile * count * n
    if total < QUICK_FLOPS:
        return RunCost(count, n, per_tile, None)
    device = str(stage.device)
    speed = conv_throughput(device, dtype) * EFFICIENCY.get(dtype, 0.3)
    return RunCost(count, n, per_tile, total / speed)
