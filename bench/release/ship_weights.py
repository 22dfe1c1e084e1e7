"""Copy trained stages into weights/ as fp16 and check that fp16 holds their quality.

    python -m bench.release.ship_weights --base runs/base16 --sr runs/sr32 --refiner runs/ref32
    python -m bench.release.ship_weights --base runs/distil/round1-4steps --suffix=-4step

For each run folder it takes ``latest.safetensors`` (the EMA stage), writes it
to ``weights/<name><suffix>.safetensors`` in fp16, and compares samples of the
fp32 and the fp16 weights from the same seeds (both computed in fp32; a
distilled stage as it says): the largest pixel difference and the SWD between
the two sets are printed. Without a suffix it also renders
``workflows/cdm_example_16px.png`` (a base-stage sample) for the upscaling
workflow.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import cascade_core as cc
from cascade_core import to_uint8
from train.config import run_record
from train.metrics.scores import sliced_wasserstein
from train.state import STAGE_PATTERN, numbered

ROOT = Path(__file__).resolve().parents[2]
NAMES = {"base": "cifar10-base16", "sr": "cifar10-sr16to32", "refiner": "cifar10-refiner32"}


def samples(stage, role, n=32):
    k = stage.config.num_classes
    labels = torch.arange(n) % k if k else None
    steps, sampler, spacing = stage.config.sampling.resolve(0, "dpmpp_2m", "karras")
    plan = cc.SamplingPlan(sampler=sampler, steps=steps, spacing=spacing)
    if role == "base":
        return cc.generate(stage, plan, cc.Conditioning.for_base(n, labels), seed=0)[0]
    size = stage.config.low_res
    low = torch.linspace(-1, 1, n * 3 * size * size).view(n, 3, size, size).sin()
    if role == "sr":
        lowres = cc.make_condition(low, 0.1, 0)
        return cc.super_resolve(stage, plan, cc.Conditioning.for_upsampling(lowres, labels),
                                seed=0)
    return cc.refine(stage, cc.SamplingPlan(steps=10, start=cc.Start.partial(0.5)),
                     cc.Conditioning.for_refining(low), seed=0)


def _provenance(run: Path, training: dict) -> dict:
    """Steps and images trained, from the run folder (older runs did not record them)."""
    steps = max((int(STAGE_PATTERN.match(p.name).group(1))
                 for p in numbered(run, STAGE_PATTERN)), default=0)
    batch = run_record(run).get("batch_size", 0)
    return {**training, "steps": training.get("steps", steps),
            "images_seen": training.get("images_seen", steps * batch)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.release.ship_weights", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    for role in NAMES:
        p.add_argument(f"--{role}", default="", help=f"run folder of the {role} stage")
    p.add_argument("--out", default=str(ROOT / "weights"))
    p.add_argument("--suffix", default="", help="appended to the file names (a distilled "
                   "stage: -4step); the example image is rendered only without one")
    args = p.parse_args(argv)
    out = Path(args.out)
    for role, name in NAMES.items():
        run = getattr(args, role)
        if not run:
            continue
        stage = cc.load_stage(Path(run) / "latest.safetensors", dtype="fp32")
        stage.config = replace(stage.config, training=_provenance(Path(run), stage.config.training))
        path = cc.save_stage(stage, out / f"{name}{args.suffix}.safetensors", dtype="fp16")
        half = cc.load_stage(path, dtype="fp32")
        a, b = samples(stage, role), samples(half, role)
        swd = float(np.mean(sliced_wasserstein(a, b)))
        print(f"{path.name}: {stage.num_parameters() / 1e6:.2f}M params, "
              f"{path.stat().st_size / 1e6:.1f} MB; "
              f"fp16 vs fp32 samples: max |diff| {float((a - b).abs().max()):.4f}, SWD {swd:.2f}")
        if role == "base" and not args.suffix:
            horse = cc.Conditioning.for_base(1, torch.tensor([7]))
            img, _ = cc.generate(half, cc.SamplingPlan(steps=30), horse, seed=7)
            Image.fromarray(to_uint8(img)[0]).save(ROOT / "workflows" / "cdm_example_16px.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
