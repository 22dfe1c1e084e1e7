"""Regions against separate runs: workflow 10's canvas against three plain 16 px runs.

    python -m bench.speed.regions_speed            # shipped base stage, 8 steps, batch 4
    python -m bench.speed.regions_speed --quick    # 2 steps, batch 1

Side by side in one process, alternating, median of ``--repeats``: the 16 x 48 canvas with three
20 px regions of the shipped base stage (``cc.generate_regions``, as workflow 10 samples it)
against three separate ``cc.generate`` runs of the same stage at 16 x 16, one per class; and the
canvas again with the members evaluated one after the other (a memory budget that fits one
member's batch but not three, as a large canvas would meet). A canvas of N regions costs N
evaluations of its regions per step; each region here is 16 x 20 px, a little more than a 16 px
image; members of one stage on boxes of one size run as one batch where memory allows.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from unittest import mock

import torch

import cascade_core as cc
from cascade_core.run.tiling import estimate_bytes

ROOT = Path(__file__).resolve().parents[2]
BOXES = ((0, 0, 16, 20), (0, 14, 16, 20), (0, 28, 16, 20))
CLASSES = (0, 8, 1)  # airplane, ship, automobile


def canvas(base, plan, batch: int):
    regions = [cc.Region(base, torch.full((batch,), c), box=b) for c, b in zip(CLASSES, BOXES)]
    return cc.generate_regions(regions, plan, canvas=(16, 48), batch=batch, seed=0)


def one_by_one(base, plan, batch: int):
    one = estimate_bytes(base.config, (batch, 16, 20))
    with mock.patch("cascade_core.run.tiling.available_bytes", return_value=int(2.5 * one)):
        return canvas(base, plan, batch)


def separate(base, plan, batch: int):
    return [cc.generate(base, plan, cc.Conditioning.for_base(batch, torch.full((batch,), c)),
                        seed=0) for c in CLASSES]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.speed.regions_speed", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    base = cc.load_stage(ROOT / "weights" / "cifar10-base16.safetensors")
    steps, batch = (2, 1) if args.quick else (8, 4)
    plan = cc.SamplingPlan(steps=steps)
    times = {"regions": [], "one_by_one": [], "separate": []}
    for _ in range(1 if args.quick else args.repeats):
        for name, run in (("regions", canvas), ("one_by_one", one_by_one),
                          ("separate", separate)):
            t0 = time.perf_counter()
            run(base, plan, batch)
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{steps} steps, batch {batch}, {torch.get_num_threads()} threads")
    print(f"16 x 48 canvas, 3 regions batched:  {med['regions'] * 1000:.0f} ms")
    print(f"16 x 48 canvas, 3 regions one by one: {med['one_by_one'] * 1000:.0f} ms")
    print(f"3 separate 16 x 16 runs:            {med['separate'] * 1000:.0f} ms")
    print(f"regions batched / separate = {med['regions'] / med['separate']:.2f}")
    print(f"regions one by one / batched = {med['one_by_one'] / med['regions']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
