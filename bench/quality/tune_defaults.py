"""Workflow 01's defaults: the fastest steps x precision that keeps the shipped cascade's quality.

    python -m bench.quality.tune_defaults quality   # KID + class agreement per cell (~5 min each)
    python -m bench.quality.tune_defaults speed     # workflow 01, old vs new defaults, side by side
    python -m bench.quality.tune_defaults report    # the table, the pick and the speed-up breakdown
    python -m bench.quality.tune_defaults all --quick   # tiny random stages, seconds (CI)

Every quality cell samples the same 1,000 images (same seeds and classes, balanced) with the
workflow's own handover (truncated at s = 0.15, DPM-Solver++(2M), Karras) and scores them
against the same 2,000 test images (the model card's reference, cached features). "Equal"
means KID_new <= KID_old + 2 sqrt(std_old^2 + std_new^2) and class agreement_new >= old - 2
sqrt(var_old + var_new) (binomial variances). Re-run after the shipped weights change: a cell is
kept only while the SHA-256 of the stage files it was scored with still matches (--force redoes
all). Results: bench/results/tune_defaults.json.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

from cascade_core import load_stage, precision

from ..common import RESULTS, alternating, machine, tiny_dataset

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "workflows" / "01_base_then_sr.json"
WEIGHTS = {"base": ROOT / "weights" / "cifar10-base16.safetensors",
           "sr": ROOT / "weights" / "cifar10-sr16to32.safetensors"}
OLD = {"steps": 30, "sr_steps": 30, "dtype": "fp32"}  # workflow 01's first defaults
GRID = [OLD, {"steps": 30, "sr_steps": 30, "dtype": "bf16"},
        *({"steps": n, "sr_steps": n, "dtype": d} for n in (15, 10) for d in ("fp32", "bf16")),
        # between 15 (equal) and 10 (not): which stage needs the steps (the SR stage is ~80% of
        # the cost)?
        {"steps": 15, "sr_steps": 10, "dtype": "bf16"},
        {"steps": 12, "sr_steps": 12, "dtype": "bf16"},
        *({"steps": 10, "sr_steps": 15, "dtype": d} for d in ("fp32", "bf16")),
        # the GPU-continued weights keep their quality at 10 + 10: how far down?
        *({"steps": 8, "sr_steps": 8, "dtype": d} for d in ("fp32", "bf16")),
        {"steps": 6, "sr_steps": 6, "dtype": "bf16"}]
FIXED = {"sampler": "dpmpp_2m", "s": 0.15, "truncated": True, "guidance": 1.0, "seed": 0}
RESULT = RESULTS / "tune_defaults.json"


def fingerprint(paths) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(Path(p).read_bytes())
    return h.hexdigest()[:16]


def key(cell: dict) -> str:
    return f"{cell['steps']}+{cell['sr_steps']} {cell['dtype']}"


def score_cell(cell: dict, weights: dict, opts) -> dict:
    """KID and class agreement of 1,000 (``opts.num``) samples drawn with ``cell``'s settings."""
    from train.eval import CACHE_DIR, EvalOptions, evaluate
    from train.metrics.sample_cascade import Cascade, CascadeSettings, sample_cascade

    base, sr = (load_stage(weights[k], dtype="fp32") for k in ("base", "sr"))
    t0 = time.time()
    settings = CascadeSettings(steps=cell["steps"], sr_steps=cell["sr_steps"],
                               sampler=FIXED["sampler"], s=FIXED["s"], truncated=True,
                               guidance=FIXED["guidance"], dtype=cell["dtype"], batch=opts.batch)
    images, labels = sample_cascade(Cascade(base, sr), opts.num, settings, seed=FIXED["seed"],
                                    log=None)
    sampled = time.time() - t0
    options = EvalOptions(metrics=tuple(opts.metrics), ref_num=opts.ref_num,
                          classifier=opts.classifier, log=lambda *a: None,
                          cache_dir=opts.feature_cache or CACHE_DIR)  # the same features
    scores = evaluate(images, labels, opts.ref, options=options)
    return {**cell, **FIXED, "kid": scores["kid"], "kid_std": scores["kid_std"],
            "class_accuracy": scores.get("class_accuracy"), "num": opts.num,
            "ref_num": scores["num_reference"], "sampling_seconds": round(sampled, 1)}


def equal_or_better(new: dict, old: dict) -> bool:
    """The issue's rule: within two combined standard deviations of the old figures."""
    kid_ok = new["kid"] <= old["kid"] + 2 * math.hypot(old["kid_std"], new["kid_std"])
    if old.get("class_accuracy") is None:
        return kid_ok
    var = [r["class_accuracy"] * (1 - r["class_accuracy"]) / r["num"] for r in (old, new)]
    return kid_ok and new["class_accuracy"] >= old["class_accuracy"] - 2 * math.sqrt(sum(var))


def pick(cells: list[dict], cost) -> dict:
    """The cheapest cell (by ``cost(cell)``) that is equal to the old defaults; the old cell when
    none is."""
    old = next(c for c in cells if key(c) == key(OLD))
    ok = [c for c in cells if equal_or_better(c, old)]
    return min(ok, key=cost) if ok else old


def quality(opts, weights: dict, results: dict) -> dict:
    """Score every cell of the grid not yet scored with these weights (or all, with --force)."""
    grid = opts.grid
    have = precision.native_dtypes("cpu")
    stamp = fingerprint(weights.values())
    cells = {c["key"]: c for c in results.get("cells", []) if c.get("weights") == stamp}
    for cell in grid:
        if cell["dtype"] not in have:
            print(f"{key(cell)}: skipped, this CPU has {have}")
            continue
        if key(cell) in cells and not opts.force:
            continue
        print(f"scoring {key(cell)} ...", flush=True)
        row = {"key": key(cell), "weights": stamp, **score_cell(cell, weights, opts)}
        cells[row["key"]] = row
        print(f"  KID {row['kid']:.4f} ± {row['kid_std']:.4f}, agreement "
              f"{row['class_accuracy']}, sampled in {row['sampling_seconds']} s", flush=True)
        results["cells"] = list(cells.values())
        write(results, opts.result)
    results["cells"] = list(cells.values())
    return results


def workflow_overrides(cell: dict) -> list[str]:
    return [f"3.steps={cell['steps']}", f"4.steps={cell['sr_steps']}", f"dtype={cell['dtype']}"]


def speed(opts, stage_dirs, cells: dict) -> dict:
    """Seconds per run of workflow 01 for each setting, alternating, median of ``opts.repeats``
    with the spread; the image batch is the workflow's own."""
    from nodes import comfy_bridge as bridge
    from nodes.headless.executor import run

    out = Path(tempfile.mkdtemp(prefix="tune_defaults_"))
    runs = {name: (lambda c=cell: run(WORKFLOW, out, workflow_overrides(c),
                                      stage_dirs=stage_dirs))
            for name, cell in cells.items()}
    try:  # one warm-up each: loading, caches, first-touch allocations
        return alternating(runs, repeats=opts.repeats)
    finally:  # the stage folders were added for this run only
        for d in stage_dirs:
            bridge.remove_stage_dir(d)


def speed_cells(new: dict) -> dict:
    """The four runs of the breakdown: old, new steps in fp32, old steps in the new precision,
    and the new defaults."""
    return {"old": OLD, "new steps, fp32": {**new, "dtype": "fp32"},
            "old steps, new dtype": {**OLD, "dtype": new["dtype"]}, "new": new}


def breakdown(timing: dict) -> dict:
    t = {k: v["median"] for k, v in timing.items()}
    total = t["old"] / t["new"]
    steps, dtype = t["old"] / t["new steps, fp32"], t["new steps, fp32"] / t["new"]
    return {"total": total, "steps": steps, "dtype": dtype, "other": total / (steps * dtype),
            "dtype at old steps": t["old"] / t["old steps, new dtype"]}


def report(results: dict) -> str:
    cells = sorted(results.get("cells", []), key=lambda c: (-c["steps"], c["dtype"]))
    if not cells:
        return "no quality cells yet: python -m bench.quality.tune_defaults quality"
    old = next((c for c in cells if c["key"] == key(OLD)), None)
    lines = ["| steps (base + SR) | dtype | KID (± std) | class agreement | equal to old? |",
             "|---|---|---|---|---|"]
    for c in cells:
        verdict = "(old)" if c is old else ("yes" if old and equal_or_better(c, old) else "no")
        agreement = "-" if c["class_accuracy"] is None else f"{c['class_accuracy']:.1%}"
        lines.append(f"| {c['steps']} + {c['sr_steps']} | {c['dtype']} | {c['kid']:.4f} ± "
                     f"{c['kid_std']:.4f} | {agreement} | {verdict} |")
    for name, side in (("new", results.get("pick")), ("new (fp32 only)", results.get("pick_fp32"))):
        if side:
            lines.append(f"\n{name}: {key(side)}")
    if results.get("speed"):
        lines.append("\n| run of workflow 01 | median s | spread (min-max) |\n|---|---|---|")
        for name, v in results["speed"].items():
            lines.append(f"| {name} | {v['median']:.2f} | {v['min']:.2f}-{v['max']:.2f} |")
        b = results["breakdown"]
        lines.append(f"\nspeed-up {b['total']:.2f}x = steps {b['steps']:.2f}x x dtype "
                     f"{b['dtype']:.2f}x x other {b['other']:.2f}x; new steps in fp32 alone: "
                     f"{b['steps']:.2f}x")
    return "\n".join(lines)


def cost(cell: dict) -> float:
    """Relative render cost for picking: evaluations weighted by each stage's share of the
    cascade's FLOPs (SR ~80%), halved by a native bf16 (the measured ~1.9x at large batches);
    the speed run measures the real figure."""
    evaluations = 0.2 * cell["steps"] + 0.8 * cell["sr_steps"]
    return evaluations * (0.5 if cell["dtype"] == "bf16" else 1.0)


def write(results: dict, path: Path):
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({**results, "machine": machine()}, indent=1))


def read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def quick_setup(tmp: Path) -> tuple[dict, list]:
    """Tiny random stages under the shipped names and a tiny reference set (CI)."""
    import cascade_core as cc
    torch.manual_seed(0)
    unet = cc.UNetConfig(base_channels=8, channel_mult=(1, 2), num_res_blocks=1,
                         attention_resolutions=(), num_heads=2)
    sched = cc.ScheduleConfig("cosine", 100)
    configs = {"base": cc.StageConfig(role="base", resolution=8, num_classes=3, unet=unet,
                                      schedule=sched),
               "sr": cc.StageConfig(role="sr", resolution=16, low_res=8, num_classes=3, unet=unet,
                                    schedule=sched)}
    weights = {}
    for role, name in (("base", "cifar10-base16"), ("sr", "cifar10-sr16to32")):
        stage = cc.Stage(configs[role])
        with torch.no_grad():  # zero-initialised output layers would ignore the steps
            for p in stage.parameters():
                p.add_(torch.randn_like(p) * 0.05)
        weights[role] = cc.save_stage(stage, tmp / f"{name}.safetensors")
    return weights, [tmp]


def cascade_options(argv, *, description: str, repeats: int):
    """The options of a bench that scores and times the shipped cascade in cells: what to run,
    the model card's sample and reference counts, timing repeats, --force and --quick."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("what", choices=("quality", "speed", "report", "all"))
    p.add_argument("--num", type=int, default=1000)
    p.add_argument("--ref", default=str(ROOT.parent / "shared" / "data" / "cifar10" / "test"))
    p.add_argument("--ref-num", type=int, default=2000)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--repeats", type=int, default=repeats)
    p.add_argument("--classifier", default=None)
    p.add_argument("--force", action="store_true", help="re-score every cell")
    p.add_argument("--quick", action="store_true", help="tiny random stages, seconds (CI)")
    opts = p.parse_args(argv)
    opts.feature_cache = None  # the reference's features: train.eval's cache, or --quick's own
    return opts


def quick_options(opts, tmp: Path):
    """--quick: a tiny reference set in ``tmp`` (its features cached there, computed once for
    all cells) and counts that run in seconds."""
    opts.ref, opts.num, opts.ref_num, opts.batch, opts.repeats = (
        str(tiny_dataset(tmp / "ref", classes=3, per_class=4, size=16)), 6, 12, 6, 1)
    opts.feature_cache = tmp / "features"


def main(argv=None) -> int:
    opts = cascade_options(argv, description=__doc__.splitlines()[0], repeats=7)
    opts.metrics, opts.grid, opts.result = ["kid", "acc"], GRID, RESULT
    if opts.quick:
        tmp = Path(tempfile.mkdtemp(prefix="tune_quick_"))
        weights, dirs = quick_setup(tmp)
        quick_options(opts, tmp)
        opts.metrics, opts.grid, opts.result = ["kid"], [OLD, {**OLD, "steps": 2, "sr_steps": 2}],\
            tmp / "tune_defaults.json"
    else:
        weights, dirs = WEIGHTS, [ROOT / "weights"]
    return run_steps(opts, weights, dirs)


def run_steps(opts, weights: dict, dirs: list) -> int:
    results = read(opts.result)
    if opts.what in ("quality", "all"):
        results = quality(opts, weights, results)
    cells = results.get("cells", [])
    if cells:
        results["pick"] = pick(cells, cost)
        results["pick_fp32"] = pick([c for c in cells if c["dtype"] == "fp32"], cost)
    if opts.what in ("speed", "all") and cells:
        new = {k: results["pick"][k] for k in OLD}
        results["speed"] = speed(opts, dirs, speed_cells(new))
        results["breakdown"] = breakdown(results["speed"])
    write(results, opts.result)
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
