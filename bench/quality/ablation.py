"""CDM's ablation in miniature on CIFAR-10, plus the cascade's economics.

    python -m bench.quality.ablation --single-steps 250 --num 1000 --steps 20 \\
        --levels 0,0.1,0.2,0.3,0.5
    python -m bench.quality.ablation --minutes 20 --num 1000   # the single model's 20 min here
    python -m bench.quality.ablation --quick                   # seconds, tiny models (CI)

Training takes about 25 minutes and each sampled row (1000 cascade samples + KID) about 8
minutes of one core; once the variants are trained, ``--part 0/2`` and ``--part 1/2`` in two
processes split the rows.
Every finished row is appended to OUT/rows.jsonl, so a stopped run continues where it was.

Trains, with the same training compute (model FLOPs x images, counted with
PyTorch's flop counter), (a) a single-stage 32x32 base model and (b) a 16->32
cascade whose base and SR stages share that budget, the SR stage both
without conditioning augmentation (s_max = 0, CDM Table 2b) and amortized
over s (Table 3). Then it samples every variant from the same seeds and
classes and reports KID (mean ± std over subsets) against the test split, per
augmentation level s, truncated and non-truncated, plus the sampling time of
the cascade against the single-stage model at the same step budget
(economics). Results: bench/results/ablation.json and ablation_s.png.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

import cascade_core as cc
from cascade_core import CascadeError, from_uint8
from train.config import resolve
from train.metrics.sample_cascade import Cascade, CascadeSettings, sample_cascade
from train.metrics.scores import fid, kid, sliced_wasserstein
from train.stage_recipe import train

from ..common import RESULTS, alternating, forward_flops, pyplot, save, tiny_dataset

LEVELS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5)


def eval_flops(stage, size: int) -> float:
    """FLOPs of one denoiser evaluation of ``stage`` on one ``size``-pixel image (an SR stage's
    conditioning at size / factor, as it samples or trains on crops)."""
    c = stage.config
    x = torch.randn(1, 3, size, size)
    cond = torch.randn(1, 3, size * c.low_res // c.resolution, size * c.low_res // c.resolution) \
        if c.role != "base" else None
    s = torch.zeros(1) if cond is not None else None
    with torch.no_grad():
        return forward_flops(lambda: stage(x, torch.tensor([1.0]), cond=cond, aug_level=s,
                                           labels=torch.tensor([0])))


def train_flops_per_image(cfg) -> float:
    """Forward+backward FLOPs of one training example (3x the forward, the usual estimate)."""
    from train.config import stage_config
    return 3.0 * eval_flops(cc.Stage(stage_config(cfg, 10, ())), cfg.crop or cfg.resolution)


def steps_for(cfg, budget_flops: float) -> int:
    return max(1, int(budget_flops / (train_flops_per_image(cfg) * cfg.batch_size)))


def _budgeted(cfg, budget_flops: float):
    """``cfg`` with the steps its share of the budget buys and a warmup of a tenth of them: the
    presets' fixed warmup would leave short runs of different lengths at different learning
    rates."""
    steps = steps_for(cfg, budget_flops)
    return replace(cfg, steps=steps, warmup=max(1, steps // 10))


def make_configs(data, out: Path, quick: bool):
    preset = "tiny" if quick else "small"
    extra = dict(sample_every=0, progress=False, tensorboard=False, data=data,
                 checkpoint_every=10 ** 9)
    high, low = (32, 16) if not quick else (16, 8)
    single = resolve("base", preset, {},
                     cli_values={**extra, "resolution": high, "out": str(out / "single32")})
    base = resolve("base", preset, {},
                   cli_values={**extra, "resolution": low, "out": str(out / "base16")})
    sr_kw = dict(resolution=high, low_res=low, crop=16 if not quick else 0)
    sr_aug = resolve("sr", preset, {},
                     cli_values={**extra, **sr_kw, "s_max": 0.5, "out": str(out / "sr_aug")})
    sr_none = resolve("sr", preset, {},
                      cli_values={**extra, **sr_kw, "s_max": 0.0, "out": str(out / "sr_noaug")})
    return single, base, sr_aug, sr_none


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.quality.ablation", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data/cifar10/train")
    p.add_argument("--ref", default="../shared/data/cifar10/test")
    p.add_argument("--out", default="runs/ablation")
    p.add_argument("--minutes", type=float, default=20.0,
                   help="training time of the single-stage model; its FLOPs are the budget every "
                        "variant gets")
    p.add_argument("--single-steps", type=int, default=0,
                   help="the budget as optimizer steps of the single-stage model instead "
                        "(reproducible on any machine; overrides --minutes)")
    p.add_argument("--levels", default=",".join(str(v) for v in LEVELS),
                   help="augmentation levels s sampled")
    p.add_argument("--num", type=int, default=1000, help="samples per variant")
    p.add_argument("--steps", type=int, default=30, help="sampler steps of every stage")
    p.add_argument("--part", default="0/1",
                   help="i/n: sample only every n-th row starting at i, to spread the rows over "
                        "processes once the variants are trained (rows already in "
                        "OUT/rows.jsonl are kept)")
    p.add_argument("--quick", action="store_true")
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    out = Path(args.out)
    data = args.data
    if args.quick:  # a dataset made here: no CIFAR needed, seconds of training
        data = args.ref = str(tiny_dataset(out / "data"))
    single, base, sr_aug, sr_none = make_configs(data, out, args.quick)
    # the budget: what the single-stage model does in --minutes (measured steps/s on this machine)
    single_steps = 4 if args.quick else args.single_steps or _steps_in(single, args.minutes)
    budget = train_flops_per_image(single) * single.batch_size * single_steps
    plan = {"single": _budgeted(single, budget), "base": _budgeted(base, budget / 2),
            "sr_aug": _budgeted(sr_aug, budget / 2), "sr_noaug": _budgeted(sr_none, budget / 2)}
    report = {"budget_gflop": budget / 1e9, "single_steps": single_steps,
              "sampler_steps": args.steps, "num_samples": args.num, "reference": args.ref,
              "variants": {}}
    part, parts = _part(args.part)
    stages = {name: _trained(cfg, report["variants"], name, must_exist=parts > 1)
              for name, cfg in plan.items()}
    specs = row_specs(parse_levels(args.levels))
    rows_file = out / "rows.jsonl"
    _sample_rows(args, stages, specs, rows_file=rows_file, part=part, parts=parts)
    done = _done_rows(rows_file)
    rows = [done.get(_key(_variant(name), s, t)) for name, s, t in specs]
    if any(r is None for r in rows):
        left = sum(r is None for r in rows)
        print(f"part {part}/{parts} done; {left} rows left to other parts", flush=True)
        return 0
    report["rows"] = rows
    _finish(args, report, stages)
    return 0


def _sample_rows(args, stages: dict, specs: list, rows_file: Path, part: int, parts: int):
    """Sample and score this part's rows that no process has written yet."""
    scorer = None
    n = 16 if args.quick else args.num
    for i, (sr_name, s, truncated) in enumerate(specs):
        variant = _variant(sr_name)
        # the rows file is read anew each time: other processes append to it
        if i % parts != part or _key(variant, s, truncated) in _done_rows(rows_file):
            continue
        scorer = scorer or make_scorer(args.ref, 32 if not args.quick else 16, args.num,
                                       quick=args.quick)
        t0 = time.time()
        if sr_name == "single":
            imgs, _ = sample_cascade(Cascade(stages["single"]), n,
                                     CascadeSettings(steps=args.steps), log=None)
        else:
            settings = CascadeSettings(steps=args.steps, sr_steps=args.steps, s=s,
                                       truncated=truncated)
            imgs, _ = sample_cascade(Cascade(stages["base"], stages[sr_name]), n, settings,
                                     log=None)
        row = {"variant": variant, "s": s, "truncated": truncated,
               "sample_seconds": round(time.time() - t0, 1), **scorer(imgs)}
        # one line per row: an interrupted run continues where it stopped
        with open(rows_file, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(row, flush=True)


def _finish(args, report: dict, stages: dict):
    """The economics timed side by side, then the report (or the quick run's line)."""
    eco = report["economics"] = economics(stages, args.steps, 4 if args.quick else 100,
                                          repeats=1 if args.quick else 3)
    sec, fl = eco["seconds_per_image"], eco["gflop_per_image"]
    print(f"economics: cascade / single-stage = {sec['cascade'] / sec['single']:.2f}x the "
          f"sampling time, {fl['cascade'] / fl['single']:.2f}x the GFLOPs "
          f"({fl['cascade']:.2f} / {fl['single']:.2f} per image)")
    if not args.quick:
        save("ablation", report)
        _plot(report["rows"], RESULTS / "ablation_s.png")
    else:
        print(f"quick ablation: {len(report['rows'])} rows")


def economics(stages: dict, steps: int, batch: int, repeats: int) -> dict:
    """Seconds and model GFLOPs per image of the single-stage model and of the cascade (base +
    SR), same sampler and steps per stage, timed in alternation in this process."""
    settings = CascadeSettings(steps=steps, sr_steps=steps, s=0.1, batch=batch)

    def single():
        sample_cascade(Cascade(stages["single"]), batch, settings, log=None)

    def cascade():
        sample_cascade(Cascade(stages["base"], stages["sr_aug"]), batch, settings, log=None)

    timed = alternating({"single": single, "cascade": cascade}, repeats=repeats)
    seconds = {k: v["median"] for k, v in timed.items()}
    flops = {k: steps * eval_flops(stages[k].eval(), stages[k].config.resolution) / 1e9
             for k in ("single", "base", "sr_aug")}
    return {"batch": batch, "threads": torch.get_num_threads(),
            "seconds_per_image": {k: v / batch for k, v in seconds.items()},
            "gflop_per_image": {"single": flops["single"],
                                "cascade": flops["base"] + flops["sr_aug"]}}


def parse_levels(text: str) -> list[float]:
    """The ``--levels`` list: comma-separated augmentation levels in [0, 1]."""
    try:
        levels = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise CascadeError("--levels must be numbers", "e.g. 0,0.1,0.3", text) from None
    if not levels or any(not 0 <= s <= 1 for s in levels):
        raise CascadeError("--levels must be levels s in [0, 1]", "e.g. 0,0.1,0.3", text)
    return levels


def row_specs(levels: list[float]) -> list[tuple]:
    """(SR variant, s, truncated) of every row: the single-stage model, the cascade without
    augmentation, then the amortized SR stage at each level, non-truncated and truncated (a
    truncation at s = 0 is the non-truncated row, so it is not repeated)."""
    return [("single", None, None), ("sr_noaug", 0.0, False)] + \
        [("sr_aug", s, t) for t in (False, True) for s in levels if not (t and s == 0)]


def _part(text: str) -> tuple[int, int]:
    try:
        part, parts = (int(v) for v in text.split("/"))
    except ValueError:
        part, parts = -1, 0
    if not 0 <= part < parts:
        raise CascadeError("--part must be i/n with 0 <= i < n", "e.g. 0/2 and 1/2", text)
    return part, parts


def _variant(name: str) -> str:
    return {"single": "single-stage 32px", "sr_noaug": "cascade, no aug",
            "sr_aug": "cascade, amortized aug"}[name]


def _key(variant, s, truncated) -> str:
    return f"{variant}|{s}|{truncated}"


def _done_rows(path: Path) -> dict:
    if not path.is_file():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {_key(r["variant"], r["s"], r["truncated"]): r for r in rows}


def _trained(cfg, record: dict, name: str, must_exist: bool):
    """The variant's stage: trained now, or loaded when a previous run (same plan) wrote it."""
    path = Path(cfg.out) / f"stage-{cfg.steps:07d}.safetensors"
    t0 = time.time()
    if not path.is_file():
        if must_exist:
            raise CascadeError(f"--part needs the trained variants; {path} is missing",
                               "a run without --part first (it trains, then samples)",
                               "no stage file")
        path = train(cfg)
        print(f"trained {name}: {cfg.steps} steps in {time.time() - t0:.0f}s", flush=True)
    stage = cc.load_stage(path, dtype="fp32")
    timing = Path(cfg.out) / "train_seconds.json"
    if not timing.is_file():
        timing.write_text(json.dumps(round(time.time() - t0, 1)))
    record[name] = {"steps": cfg.steps, "params": stage.num_parameters(),
                    "train_seconds": json.loads(timing.read_text())}
    return stage


def _steps_in(cfg, minutes: float) -> int:
    from ..speed.preset_cost import step_seconds
    sec, _ = step_seconds(cfg, cfg.batch_size, 2)
    return max(1, int(minutes * 60 / sec))


def make_scorer(ref, size, num, quick):
    """SWD against the reference images; outside --quick also KID (± std) and FID on Inception
    features of max(num, 2000) reference images (cached like train.eval's)."""
    from train.eval import CACHE_DIR, EvalOptions, load_images, reference_features
    feats = None
    if quick:
        ref_u8, _ = load_images(ref, size, limit=32)
    else:
        from train.metrics.inception import InceptionFeatures
        net = InceptionFeatures()
        feats, ref_u8 = reference_features(net, ref, size=size, options=EvalOptions(
            ref_num=max(num, 2000), cache_dir=CACHE_DIR))
    ref_t = from_uint8(ref_u8)

    def score(images: np.ndarray) -> dict:
        t = from_uint8(images)
        row = {"swd": float(np.mean(sliced_wasserstein(t, ref_t[: len(t)])))}
        if feats is not None:
            f = net(images)
            row["kid"], row["kid_std"] = kid(f, feats)
            row["fid"] = fid(f, feats)
        return row

    return score


def _plot(rows, path):
    plt = pyplot()
    if plt is None:
        return
    metric = "kid" if "kid" in rows[0] else "swd"
    fig, ax = plt.subplots(figsize=(6, 4))
    for truncated in (False, True):
        rs = [r for r in rows
              if r["variant"] == "cascade, amortized aug" and r["truncated"] == truncated]
        ax.errorbar([r["s"] for r in rs], [r[metric] for r in rs],
                    yerr=[r.get("kid_std", 0) for r in rs],
                    marker="o", label=f"cascade, {'truncated' if truncated else 'non-truncated'}")
    for r in rows:
        if r["s"] is None or r["variant"] == "cascade, no aug":
            ax.axhline(r[metric], ls="--", lw=1, color="gray" if r["s"] is None else "red")
            ax.text(0.0, r[metric], "single-stage" if r["s"] is None else "no aug", fontsize=8,
                    va="bottom")
    ax.set_xlabel("conditioning augmentation level s")
    ax.set_ylabel(metric.upper())
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
