"""Training throughput with the real data loader against the same batches already in memory.

    python -m bench.speed.loader_speed          # base and SR stages, small preset, batch 64
    python -m bench.speed.loader_speed --quick           # a tiny dataset, seconds (CI)

Both sides run the same model, optimizer and batch size; the loader side pulls every batch
through ``train.data.loader`` (decode, resize, flip, noise, the SR condition's augmentation),
the synthetic side cycles a few of those batches already built. Steps alternate in blocks, and
the medians per step give the loader's share of a training step. The issue's bar: under 10%.
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

import cascade_core as cc
from train.config import resolve, stage_config
from train.data import BatchOrder, ImageSource, loader
from train.stage_recipe import example_maker

from ..common import save, tiny_dataset

ROOT = Path(__file__).resolve().parents[2]
ROLES = {"base": {"resolution": 16}, "sr": {"resolution": 32, "low_res": 16, "crop": 16}}


def throughput(role: str, data: Path, opts) -> dict:
    cfg = resolve(role, opts.preset, {}, cli_values={**ROLES[role], "data": str(data),
                                                     "batch_size": opts.batch})
    source = ImageSource(data)
    if opts.cache:
        source.preload(cfg.resolution, log=print)
    scfg = stage_config(cfg, source.num_classes, source.class_names)
    model = cc.Stage(scfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    total = opts.blocks * opts.block * 2 + 8
    real = iter(loader(source, example_maker(cfg, scfg),
                       BatchOrder(batch=opts.batch, steps=total, seed=0), workers=opts.workers))
    kept = [next(real) for _ in range(4)]
    synthetic = itertools.cycle(kept)

    def step(batch):
        loss = cc.training_loss(model, batch)["loss"].mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    times = {"loader": [], "synthetic": []}
    for _ in range(opts.blocks):
        for name, batches in (("loader", real), ("synthetic", synthetic)):
            for _ in range(opts.block):
                t0 = time.perf_counter()
                step(next(batches))
                times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    row = {"role": role, "batch": opts.batch, "workers": opts.workers, "cache": opts.cache,
           "images_per_s": {k: opts.batch / v for k, v in med.items()},
           "spread_s": {k: [min(v), max(v)] for k, v in times.items()},
           "loader_cost": med["loader"] / med["synthetic"] - 1}
    print(f"{role}: loader {row['images_per_s']['loader']:.0f} img/s, in memory "
          f"{row['images_per_s']['synthetic']:.0f} img/s: the loader costs "
          f"{row['loader_cost']:+.1%} per step (workers {opts.workers}, batch {opts.batch}, "
          f"images cached: {opts.cache})",
          flush=True)
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cifar10" / "train"))
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--blocks", type=int, default=5)
    p.add_argument("--block", type=int, default=4, help="steps per block")
    p.add_argument("--preset", default="small")
    p.add_argument("--cache", action=argparse.BooleanOptionalAction, default=True,
                   help="decode the images once into memory first, as training does")
    p.add_argument("--quick", action="store_true")
    opts = p.parse_args(argv)
    data = Path(opts.data)
    if opts.quick:
        data = tiny_dataset(Path(tempfile.mkdtemp()) / "data", size=32)
        opts.batch, opts.blocks, opts.block, opts.preset = 4, 2, 2, "tiny"
    rows = [throughput(role, data, opts) for role in ROLES]
    if not opts.quick:
        print(f"wrote {save('loader_speed', {'threads': torch.get_num_threads(), 'rows': rows})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
