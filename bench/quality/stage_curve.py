"""KID against training steps, per stage: sample every checkpoint of a run, then score them.

    # where the run trained (a GPU machine, say): one .npz of samples per run
    python -m bench.quality.stage_curve sample --run runs/base16g --role base \\
        --partner weights/cifar10-sr16to32.safetensors --start weights/cifar10-base16.safetensors \\
        --out curve-base.npz --device auto
    python -m bench.quality.stage_curve sample --run runs/sr32g --role sr \\
        --start weights/cifar10-sr16to32.safetensors --out curve-sr.npz --device auto
    # here (Inception on the CPU): KID and class agreement of every point, a table and a figure
    python -m bench.quality.stage_curve score curve-base.npz curve-sr.npz
    python -m bench.quality.stage_curve plot bench/results/stage_curve.json   # the figure again

Each stage is scored the way the table of RESULTS §7 separates them:

* a **base** checkpoint, through a fixed SR stage (``--partner``) into 32 px
  cascade samples (30 + 30 DPM-Solver++(2M) Karras steps, s = 0.1, guidance 1:
  the model card's settings), image i of class i mod 10;
* an **SR** checkpoint, on real 16 px training images (class-balanced,
  downsampled exactly as in training) with s = 0.1: the stage alone, with no
  base stage's errors in its input.

``--start`` adds the weights the run began from as step 0. Points use 500
samples by default (the issue allows 500 for curve points; the model card's
1,000 is for the final pick); every point of a run uses the same seeds.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

import cascade_core as cc
from train.distributed import pick_device
from train.eval import CACHE_DIR, EvalOptions, evaluate
from train.metrics.sample_cascade import Cascade, CascadeSettings, sample_cascade

from ..common import RESULTS, pyplot, save
from .stage_gaps import real_images, sr_on_real


def checkpoints(run: Path, start=()) -> list[tuple[int, Path, bool]]:
    """(step, stage file, is a start point) of the ``start`` points (``PATH`` for step 0, or
    ``STEP:PATH``), then of every checkpoint in a run folder, oldest first."""
    points = sorted((int(m.group(1)), f, False) for f in run.glob("stage-*.safetensors")
                    if (m := re.fullmatch(r"stage-(\d+)\.safetensors", f.name)))
    if not points:
        raise cc.CascadeError(f"no checkpoints in {run}", "stage-NNNNNNN.safetensors files", 0)
    first = []
    for p in start:
        step, _, path = p.partition(":")
        first.append((int(step), Path(path), True) if step.isdigit() and path else
                     (0, Path(p), True))
    steps = [s for s, _, _ in first + points]
    if len(set(steps)) < len(steps):
        raise cc.CascadeError("two points share a step (a start point's STEP is a checkpoint's)",
                              "distinct steps", sorted(steps))
    return first + points


def run_batch(run: Path) -> int:
    """The global batch a run trained with (its config.json)."""
    from train.config import run_record
    try:
        return int(run_record(run)["batch_size"])
    except (cc.CascadeError, KeyError, TypeError, ValueError):
        raise cc.CascadeError(f"no training record in {run}", "config.json with batch_size",
                              "none") from None


def sample_points(args) -> dict:
    device = pick_device(args.device)
    partner = cc.load_stage(args.partner, device) if args.partner else None
    if args.role == "base" and partner is None:
        raise cc.CascadeError("a base curve needs the SR stage that finishes it", "--partner SR",
                              "none")
    real, labels = (real_images(args.data, args.num) if args.role == "sr" else (None, None))
    arrays, t0 = {"role": np.array(args.role), "steps": np.array(args.steps)}, time.time()
    points = checkpoints(Path(args.run), args.start)
    batch = run_batch(Path(args.run))
    for step, path, is_start in points:
        # images seen since the reference weights: a start point given as STEP:PATH is where
        # this run began (the offset), a bare PATH the reference itself
        seen = args.offset_images + step * batch
        if is_start:
            seen = args.offset_images if step else 0
        arrays[f"seen_{step}"] = np.array(seen)
        stage = cc.load_stage(path, device)
        if args.role == "base":
            settings = CascadeSettings(steps=args.steps, sr_steps=args.steps, s=0.1, batch=250)
            images, lab = sample_cascade(Cascade(stage, partner), args.num, settings, log=None)
        else:
            images, lab = cc.to_uint8(sr_on_real(stage, real, labels, steps=args.steps)), labels
        arrays[f"images_{step}"], arrays[f"labels_{step}"] = images, lab
        print(f"{args.role} step {step}: {len(images)} samples ({time.time() - t0:.0f}s)",
              flush=True)
    return arrays


def score_file(path: str, ref: str, *, ref_num: int, held_out: bool,
               metrics=("kid", "acc")) -> list[dict]:
    try:
        z = np.load(path, allow_pickle=False)
        role = str(z["role"])
    except (OSError, ValueError, KeyError) as e:
        raise cc.CascadeError(f"not a curve file: {path}", "a file written by "
                              "`python -m bench.quality.stage_curve sample`",
                              str(e)[:120]) from None
    steps = sorted(int(k.split("_")[1]) for k in z.files if k.startswith("images_"))
    rows = []
    for step in steps:
        options = EvalOptions(metrics=tuple(metrics), ref_num=ref_num, held_out=held_out,
                              cache_dir=CACHE_DIR, log=lambda *a: None)
        r = evaluate(z[f"images_{step}"], z[f"labels_{step}"], ref, options=options)
        keep = ("kid", "kid_std", "swd", "class_accuracy", "num_samples")
        seen = {"images": int(z[f"seen_{step}"])} if f"seen_{step}" in z.files else {}
        rows.append({"role": role, "step": step, **seen, **{k: r[k] for k in keep if k in r}})
        shown = (f"KID {r['kid']:.4f} ± {r['kid_std']:.4f}" if "kid" in r
                 else f"SWD {float(np.mean(r['swd'])):.2f} (mean over levels)")
        print(f"{role:<4} step {step:>6}: " + shown +
              f", class agreement {r['class_accuracy']:.1%}", flush=True)
    return rows


def plot(rows: list[dict], path: Path):
    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    labels = {"base": "base (cascade, fixed SR)", "sr": "SR (on real 16 px)"}
    by_images = all("images" in r for r in rows)
    for role in dict.fromkeys(r["role"] for r in rows):
        rs = sorted((r for r in rows if r["role"] == role),
                    key=lambda r: r["images"] if by_images else r["step"])
        x = [r["images"] / 1e6 if by_images else r["step"] for r in rs]
        ax.errorbar(x, [r["kid"] for r in rs], yerr=[r["kid_std"] for r in rs], fmt="o-",
                    capsize=3, label=labels[role])
    ax.set_xlabel("training images since the shipped weights (millions)" if by_images
                  else "training steps")
    ax.set_ylabel("KID at 32 px (± std over subsets)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.quality.stage_curve", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("sample", help="samples of every checkpoint of one run -> .npz")
    a.add_argument("--run", required=True)
    a.add_argument("--role", choices=("base", "sr"), required=True)
    a.add_argument("--partner", default="", help="the SR stage a base curve samples through")
    a.add_argument("--start", action="append", default=[],
                   help="weights the run began from: PATH (step 0) or STEP:PATH; repeatable")
    a.add_argument("--offset-images", type=int, default=0,
                   help="training images the run's starting weights had seen beyond the "
                        "reference (the shipped) weights")
    a.add_argument("--data", default="../shared/data/cifar10/train")
    a.add_argument("--num", type=int, default=500)
    a.add_argument("--steps", type=int, default=30)
    a.add_argument("--device", default="auto")
    a.add_argument("--out", required=True)
    b = sub.add_parser("score", help="KID and class agreement of every point -> table, figure")
    b.add_argument("files", nargs="+")
    b.add_argument("--ref", default="../shared/data/cifar10/test")
    b.add_argument("--ref-num", type=int, default=2000)
    b.add_argument("--held-out", action="store_true", help="score on the selection set")
    b.add_argument("--name", default="stage_curve")
    b.add_argument("--quick", action="store_true", help="SWD instead of KID, nothing saved")
    c = sub.add_parser("plot", help="the figure again from a saved result (results/NAME.json)")
    c.add_argument("result")
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "plot":
            plot(json.loads(Path(args.result).read_text())["rows"],
                 Path(args.result).with_suffix(".png"))
            return 0
        if args.command == "sample":
            arrays = sample_points(args)
            np.savez(args.out, **arrays)
            print(f"wrote {args.out}")
            return 0
        metrics = ("swd", "acc") if args.quick else ("kid", "acc")
        rows = [r for f in args.files for r in score_file(f, args.ref, ref_num=args.ref_num,
                                                          held_out=args.held_out,
                                                          metrics=metrics)]
    except cc.CascadeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.quick:
        return 0
    save(args.name, {"ref_num": args.ref_num, "held_out": args.held_out, "rows": rows})
    plot(rows, RESULTS / f"{args.name}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
