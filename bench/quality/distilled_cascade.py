"""The shipped cascade against its distilled stages: quality per step count; workflow 01 speed.

    python -m bench.quality.distilled_cascade quality   # KID, FID, class agreement per cell
    python -m bench.quality.distilled_cascade speed     # workflow 01 per cell, side by side
    python -m bench.quality.distilled_cascade report    # the table and the speed ratios
    python -m bench.quality.distilled_cascade all --quick   # tiny random stages, seconds (CI)

Every quality cell samples the same 1,000 images as ``tune_defaults`` (the same seeds and
classes, workflow 01's truncated handover at s = 0.15, fp32) and scores them against the same
2,000 test images. The teachers (the shipped stages) sample with workflow 01's DPM-Solver++(2M)
on Karras spacing; a student samples as it says (DDIM, its steps, trailing spacing). "Equal"
is ``tune_defaults``' rule against the teachers at 8 + 8, today's workflow 01. Speed: whole runs
of workflow 01 (its batch of 8, dtype auto) through the headless runner in one process,
alternating between the cells, median of ``--repeats``; seconds per image = that median / 8.
A student cell is scored only when both its files are in weights/
(``cifar10-base16-<n>step``, ``cifar10-sr16to32-<n>step``). Results:
bench/results/distilled_cascade.json.
"""
from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from cascade_core import load_stage

from ..common import RESULTS, alternating
from .tune_defaults import (
    ROOT,
    WORKFLOW,
    cascade_options,
    equal_or_better,
    fingerprint,
    quick_options,
    quick_setup,
    read,
    write,
)

TEACHERS = {"base": "cifar10-base16", "sr": "cifar10-sr16to32"}
TEACHER_SAMPLING = {"sampler": "dpmpp_2m", "spacing": "karras"}  # workflow 01's
HANDOVER = {"s": 0.15, "truncated": True, "guidance": 1.0, "seed": 0}
STEPS = (8, 4, 2, 1)
REFERENCE = "teacher 8+8"
RESULT = RESULTS / "distilled_cascade.json"
WORKFLOW_BATCH = 8


def student_names(steps: int) -> dict:
    """The file names of the students sampled with ``steps`` steps per stage."""
    return {role: f"{name}-{steps}step" for role, name in TEACHERS.items()}


def cells(folder: Path) -> list[dict]:
    """Every teacher cell, and every student cell whose two files are in ``folder``."""
    out = [{"key": f"teacher {n}+{n}", "who": "teacher", "steps": n, "files": TEACHERS}
           for n in STEPS]
    for n in STEPS:
        names = student_names(n)
        if all((folder / f"{f}.safetensors").is_file() for f in names.values()):
            out.append({"key": f"student {n}+{n}", "who": "student", "steps": n, "files": names})
    return out


def paths(cell: dict, folder: Path) -> dict:
    return {role: folder / f"{name}.safetensors" for role, name in cell["files"].items()}


def settings_of(cell: dict, batch: int):
    """How ``cell`` samples: the teacher with workflow 01's sampler at its steps, a student
    with steps 0 (as it says)."""
    from train.metrics.sample_cascade import CascadeSettings
    steps = cell["steps"] if cell["who"] == "teacher" else 0
    return CascadeSettings(steps=steps, sr_steps=steps, s=HANDOVER["s"], truncated=True,
                           guidance=HANDOVER["guidance"], dtype="fp32", batch=batch,
                           **TEACHER_SAMPLING)


def score_cell(cell: dict, folder: Path, opts) -> dict:
    """KID, FID and class agreement of ``opts.num`` samples of ``cell``."""
    from train.eval import CACHE_DIR, EvalOptions, evaluate
    from train.metrics.sample_cascade import Cascade, sample_cascade

    files = paths(cell, folder)
    base, sr = (load_stage(files[k], dtype="fp32") for k in ("base", "sr"))
    t0 = time.time()
    images, labels = sample_cascade(Cascade(base, sr), opts.num, settings_of(cell, opts.batch),
                                    seed=HANDOVER["seed"], log=None)
    sampled = time.time() - t0
    options = EvalOptions(metrics=tuple(opts.metrics), ref_num=opts.ref_num,
                          classifier=opts.classifier, log=lambda *a: None,
                          cache_dir=opts.feature_cache or CACHE_DIR)
    scores = evaluate(images, labels, opts.ref, options=options)
    return {**cell, **HANDOVER, "weights": fingerprint(files.values()), "kid": scores["kid"],
            "kid_std": scores["kid_std"], "fid": scores.get("fid"),
            "class_accuracy": scores.get("class_accuracy"), "num": opts.num,
            "ref_num": scores["num_reference"], "sampling_seconds": round(sampled, 1)}


def quality(opts, folder: Path, results: dict) -> dict:
    """Score every cell not yet scored with its current files (all of them with --force)."""
    done = {c["key"]: c for c in results.get("cells", [])}
    for cell in cells(folder):
        stamp = fingerprint(paths(cell, folder).values())
        old = done.get(cell["key"])
        if old and old["weights"] == stamp and not opts.force:
            continue
        print(f"scoring {cell['key']} ...", flush=True)
        done[cell["key"]] = score_cell(cell, folder, opts)
        row = done[cell["key"]]
        print(f"  KID {row['kid']:.4f} ± {row['kid_std']:.4f}, FID {row['fid']}, agreement "
              f"{row['class_accuracy']}, sampled in {row['sampling_seconds']} s", flush=True)
        results["cells"] = list(done.values())
        write(results, opts.result)
    return results


def overrides(cell: dict) -> list[str]:
    """Workflow 01's widgets for ``cell``: its stage files and steps (0 for a student)."""
    steps = cell["steps"] if cell["who"] == "teacher" else 0
    return [f"1.stage_name={cell['files']['base']}.safetensors",
            f"2.stage_name={cell['files']['sr']}.safetensors",
            f"3.steps={steps}", f"4.steps={steps}"]


def speed(opts, folder: Path, chosen: list[dict]) -> dict:
    """Seconds per run of workflow 01 for each cell, alternating, median of ``opts.repeats``.
    Every cell's stages stay loaded, as when one workflow runs again and again: the runner's
    cache (a few stages) would otherwise reload files on every switch between cells."""
    from nodes import comfy_bridge as bridge
    from nodes import stage_nodes
    from nodes.headless.executor import run

    out = Path(tempfile.mkdtemp(prefix="distilled_cascade_"))
    runs = {c["key"]: (lambda c=c: run(WORKFLOW, out, overrides(c), stage_dirs=[folder]))
            for c in chosen}
    keep, stage_nodes.KEEP_EACH = stage_nodes.KEEP_EACH, 2 * len(chosen) + 1
    try:
        return alternating(runs, repeats=opts.repeats)
    finally:
        stage_nodes.KEEP_EACH = keep
        bridge.remove_stage_dir(folder)


def report(results: dict) -> str:
    """The table: KID, FID, class agreement, equal to the teachers at 8 + 8, seconds per image
    and speed against them."""
    rows = sorted(results.get("cells", []), key=lambda c: (-c["steps"], c["who"] != "teacher"))
    ref = next((c for c in rows if c["key"] == REFERENCE), None)
    timing = results.get("speed", {})
    lines = ["| steps (base + SR) | stages | KID (± std) | FID | class agreement | equal to "
             "teacher 8+8? | s / image | speed vs 8+8 |", "|---|---|---|---|---|---|---|---|"]
    for c in rows:
        verdict = "(reference)" if c is ref else (
            "yes" if ref and equal_or_better(c, ref) else "no")
        agreement = "-" if c["class_accuracy"] is None else f"{c['class_accuracy']:.1%}"
        fid = "-" if c["fid"] is None else f"{c['fid']:.1f}"
        t = timing.get(c["key"])
        per_image = "-" if t is None else f"{t['median'] / WORKFLOW_BATCH:.3f}"
        ratio = "-" if t is None or REFERENCE not in timing else (
            f"{timing[REFERENCE]['median'] / t['median']:.2f}x")
        lines.append(f"| {c['steps']} + {c['steps']} | {c['who']} | {c['kid']:.4f} ± "
                     f"{c['kid_std']:.4f} | {fid} | {agreement} | {verdict} | {per_image} | "
                     f"{ratio} |")
    return "\n".join(lines)


def quick_students(weights: dict, folder: Path):
    """Tiny 'students' for --quick: the random teachers recorded as 2-step DDIM stages."""
    import cascade_core as cc
    for role, path in weights.items():
        stage = cc.load_stage(path)
        config = replace(stage.config, sampling=cc.SamplingConfig("ddim", 2, "trailing"))
        student = cc.Stage(config)
        student.load_state_dict(stage.state_dict())
        cc.save_stage(student, folder / f"{student_names(2)[role]}.safetensors")


def main(argv=None) -> int:
    opts = cascade_options(argv, description=__doc__.splitlines()[0], repeats=9)
    opts.metrics, opts.result, folder = ["kid", "fid", "acc"], RESULT, ROOT / "weights"
    if opts.quick:
        folder = Path(tempfile.mkdtemp(prefix="distilled_quick_"))
        weights, _ = quick_setup(folder)
        quick_students(weights, folder)
        quick_options(opts, folder)
        opts.metrics, opts.result = ["kid"], folder / "distilled_cascade.json"
    torch.manual_seed(0)
    results = read(opts.result)
    if opts.what in ("quality", "all"):
        results = quality(opts, folder, results)
    if opts.what in ("speed", "all"):
        results["speed"] = speed(opts, folder, cells(folder))
    write(results, opts.result)
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
