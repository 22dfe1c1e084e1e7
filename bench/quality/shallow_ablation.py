"""The shallow-cascade report's ablation, done properly: stage combinations on CIFAR-10.

    python -m bench.quality.shallow_ablation --epoch-size 5000 --epochs 4,4,3 --num 1000
    python -m bench.quality.shallow_ablation --quick       # seconds, tiny data (CI)

Each combination (coarse -> upsampler -> refiner) is trained by train.shallow
with the same schedule, then sampled from the same seeds and classes; the
table gives parameters, mean time per epoch of each phase, and KID (with its
std) against the test split (SWD in --quick mode). Results go to
bench/results/shallow_ablation.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

import cascade_core as cc
from train.shallow import train_shallow
from train.shallow_train_config import ShallowTrainConfig

from ..common import save, tiny_dataset
from .ablation import make_scorer

COMBOS = [("diffusion", "pixelshuffle", "vit"), ("dae", "resnet", "conv"),
          ("diffusion", "diffusion", "diffusion")]


def sample(out: Path, n: int, steps: int) -> np.ndarray:
    from train.metrics.sample_cascade import Cascade, CascadeSettings, sample_cascade
    stages = (cc.load_stage(out / f"{k}.safetensors", dtype="fp32")
              for k in ("coarse", "upsampler", "refiner"))
    settings = CascadeSettings(steps=steps, sr_steps=steps, s=0.0, refine_strength=1.0,
                               refine_steps=max(steps // 3, 1))
    images, _ = sample_cascade(Cascade(*stages), n, settings, log=None)
    return images


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.quality.shallow_ablation",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data/cifar10/train")
    p.add_argument("--ref", default="../shared/data/cifar10/test")
    p.add_argument("--out", default="runs/shallow_ablation")
    p.add_argument("--epochs", default="4,4,3", help="epochs of phases 1,2,3")
    p.add_argument("--epoch-size", type=int, default=5000)
    p.add_argument("--num", type=int, default=1000)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    out = Path(args.out)
    e1, e2, e3 = (int(v) for v in args.epochs.split(","))
    kw = dict(phase1_epochs=e1, phase2_epochs=e2, phase3_epochs=e3, epoch_size=args.epoch_size,
              progress=False, tensorboard=False)
    if args.quick:
        args.data = args.ref = str(tiny_dataset(out / "data", size=32))
        kw.update(phase1_epochs=1, phase2_epochs=1, phase3_epochs=1, epoch_size=8, batch_size=4,
                  hidden=16, blocks=1,
                  vit_depth=1, vit_heads=2, unet_channels=8, timesteps=50, perceptual_weight=0.0)
    scorer = make_scorer(args.ref, 32, args.num, quick=args.quick)
    rows = []
    for combo in COMBOS:
        name = "->".join(combo)
        run = out / name.replace("->", "_")
        cfg = ShallowTrainConfig(data=args.data, out=str(run), coarse=combo[0], upsampler=combo[1],
                                 refiner=combo[2], **kw)
        t0 = time.time()
        train_shallow(cfg)
        logs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        per_phase = {ph: float(np.mean([r["epoch_seconds"] for r in logs if r["phase"] == ph]))
                     for ph in (1, 2, 3) if any(r["phase"] == ph for r in logs)}
        params = {k: cc.load_stage(run / f"{k}.safetensors").num_parameters()
                  for k in ("coarse", "upsampler", "refiner")}
        images = sample(run, 16 if args.quick else args.num, 3 if args.quick else args.steps)
        row = {"combo": name, "params": params, "epoch_seconds": per_phase,
               "train_seconds": round(time.time() - t0), **scorer(images)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    if not args.quick:
        save("shallow_ablation", {"rows": rows, "num_samples": args.num, "reference": args.ref,
                                  "epochs": args.epochs, "epoch_size": args.epoch_size})
    return 0


if __name__ == "__main__":
    sys.exit(main())
