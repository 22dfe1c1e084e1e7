"""What a distillation step costs against a training step of the same stage.

    python -m bench.speed.distill_cost              # the shipped base and SR stages, batch 64
    python -m bench.speed.distill_cost --quick      # batch 8, 2 repeats

Side by side in one process, alternating, median of ``--repeats``: one optimizer step's
forward and backward of the stage recipe's loss (``training_loss``) against the distillation
loss (``distillation_loss``: two teacher evaluations without gradient, then the student's
forward and backward), on random images at the stage's size. The ratio is what a round costs
per image against training the stage; images per second give a round's wall time here. Where
the CPU computes bf16 natively, the distillation step under bf16 autocast (``--precision
bf16``) is timed in the same alternation.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

import cascade_core as cc
from cascade_core.run.distillation import distillation_loss, midpoints, student_sigmas

ROOT = Path(__file__).resolve().parents[2]
STAGES = ("cifar10-base16", "cifar10-sr16to32")


def batch_for(stage, n: int, g: torch.Generator) -> dict:
    cfg = stage.config
    x0 = torch.rand(n, 3, cfg.resolution, cfg.resolution, generator=g) * 2 - 1
    batch = {"x0": x0, "noise": torch.randn(x0.shape, generator=g),
             "t": torch.randint(cfg.schedule.timesteps, (n,), generator=g),
             "label": torch.randint(cfg.num_classes, (n,), generator=g) if cfg.num_classes
             else None, "step": torch.randint(4, (n,), generator=g)}
    if cfg.role == "sr":
        batch["cond"] = cc.downsample(x0, cfg.low_res)
        batch["s"] = torch.rand(n, generator=g) * cfg.augmentation.s_max
    return batch


def step_times(name: str, n: int, repeats: int) -> dict:
    """Median seconds of a training and a distillation step of stage ``name``."""
    student = cc.load_stage(ROOT / "weights" / f"{name}.safetensors").train()
    teacher = cc.load_stage(ROOT / "weights" / f"{name}.safetensors").eval()
    sigmas = student_sigmas(student, 4)
    grid = (sigmas, midpoints(student, sigmas))
    batch = batch_for(student, n, torch.Generator().manual_seed(0))
    runs = {"train": lambda: cc.training_loss(student, batch)["loss"].mean(),
            "distil": lambda: distillation_loss(student, teacher, batch, grid=grid).mean()}
    if "bf16" in cc.precision.native_dtypes("cpu"):
        def bf16():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return distillation_loss(student, teacher, batch, grid=grid).mean()
        runs["distil_bf16"] = bf16
    times = {k: [] for k in runs}
    for _ in range(repeats):
        for key, loss in runs.items():
            t0 = time.perf_counter()
            loss().backward()
            times[key].append(time.perf_counter() - t0)
            student.zero_grad(set_to_none=True)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.speed.distill_cost", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    n, repeats = (8, 2) if args.quick else (64, args.repeats)
    print(f"batch {n}, {torch.get_num_threads()} threads, fp32, median of {repeats}")
    for name in STAGES:
        med = step_times(name, n, repeats)
        print(f"{name}: training step {med['train'] * 1000:.0f} ms ({n / med['train']:.0f} img/s), "
              f"distillation step {med['distil'] * 1000:.0f} ms ({n / med['distil']:.0f} img/s), "
              f"distil / train = {med['distil'] / med['train']:.2f}")
        if "distil_bf16" in med:
            t = med["distil_bf16"]
            print(f"  distillation step in bf16 autocast {t * 1000:.0f} ms ({n / t:.0f} img/s), "
                  f"{med['distil'] / t:.2f}x the fp32 step")
    return 0


if __name__ == "__main__":
    sys.exit(main())
