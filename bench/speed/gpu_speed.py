"""The shipped stages on the CPU and on a GPU, side by side in one process: training and rendering.

    python -m bench.speed.gpu_speed             # on a machine with CUDA -> results/gpu_speed.json
    python -m bench.speed.gpu_speed --quick     # seconds; also runs (CPU rows only) without a GPU

Training rows: one optimizer step (loss, backward, AdamW) of the shipped
stages' architectures on random data at the batch given, the data pipeline
excluded: the CPU on one thread (how the shipped weights were trained) and on
all its threads, fp32 (bf16 autocast where the CPU has it natively), against
the GPU with bf16 autocast. Rendering rows: the model card's render (base 30
steps, then SR 30 steps, batch 16; ``--render-batch``) with the shipped
weights, CPU fp32 against the GPU in fp32 and bf16. Each figure is the median
of ``--repeats`` timed runs after a warm-up; the ratios (of images per second)
are against the one-thread CPU row.
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

import cascade_core as cc
from train.config import resolve
from train.metrics.sample_cascade import Cascade, CascadeSettings, sample_cascade

from ..common import machine, save
from .preset_cost import training_step

WEIGHTS = "weights/cifar10-{}.safetensors"
SHAPES = {"base": dict(resolution=16), "sr": dict(resolution=32, low_res=16, crop=0)}


def median_seconds(fn, repeats: int, sync) -> float:
    fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def train_step(role: str, batch: int, *, device: str, dtype):
    """A closure doing one training step of the shipped ``role`` architecture on ``device``."""
    cfg = resolve(role, "small", {}, cli_values={"data": "-", **SHAPES[role]})
    return training_step(cfg, batch, device=device, dtype=dtype)[0]


def render(device: str, dtype: str, batch: int = 16):
    base = cc.load_stage(WEIGHTS.format("base16"), device)
    sr = cc.load_stage(WEIGHTS.format("sr16to32"), device)
    settings = CascadeSettings(steps=30, sr_steps=30, dtype=dtype, batch=batch)
    return lambda: sample_cascade(Cascade(base, sr), batch, settings, log=None)


def settings(cuda: bool, threads: int) -> list[tuple[str, str, int, object]]:
    """(label, device, CPU threads, training autocast dtype) of every column."""
    cpu_dtype = cc.precision.DTYPES.get(cc.precision.auto_dtype("cpu"))
    cpu_dtype = None if cpu_dtype == torch.float32 else cpu_dtype
    out = [("cpu 1 thread", "cpu", 1, cpu_dtype), (f"cpu {threads} threads", "cpu", threads,
                                                   cpu_dtype)]
    return out + ([("cuda bf16", "cuda", threads, torch.bfloat16)] if cuda else [])


def run(args) -> list[dict]:
    cuda = torch.cuda.is_available()
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    rows = []
    for role, batch in (("base", args.base_batch), ("sr", args.sr_batch)):
        for label, device, threads, dtype in settings(cuda, args.threads):
            torch.set_num_threads(threads)
            b = batch if device != "cpu" else min(batch, args.cpu_batch)  # img/s compare
            step = train_step(role, b, device=device, dtype=dtype)
            sec = median_seconds(step, args.repeats, sync)
            rows.append({"what": f"train {role}", "setting": f"{label}, batch {b}",
                         "seconds": sec, "images_per_s": b / sec})
    torch.set_num_threads(args.threads)
    for label, device, dtype in ([("cpu fp32", "cpu", "fp32")] +
                                 ([("cuda fp32", "cuda", "fp32"), ("cuda bf16", "cuda", "bf16")]
                                  if cuda else [])):
        torch.set_num_threads(1 if device == "cpu" and args.render_one_thread else args.threads)
        sec = median_seconds(render(device, dtype, args.render_batch), max(1, args.repeats // 2),
                             sync)
        rows.append({"what": f"render 30 + 30 steps, batch {args.render_batch}",
                     "setting": label, "seconds": sec, "images_per_s": args.render_batch / sec})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.speed.gpu_speed", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base-batch", type=int, default=1024)
    p.add_argument("--sr-batch", type=int, default=512)
    p.add_argument("--cpu-batch", type=int, default=64,
                   help="the CPU rows' training batch (the shipped recipe's; img/s barely depends "
                        "on it there, and a GPU-sized batch takes a minute a step on one thread)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--render-one-thread", action="store_true")
    p.add_argument("--render-batch", type=int, default=16, help="the model card's render batch")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.base_batch, args.sr_batch, args.repeats, args.render_batch = 8, 4, 1, 2
    rows = run(args)
    first = {}
    for r in rows:  # ratios of images per second: the rows' batches differ
        ref = first.setdefault(r["what"], r["images_per_s"])
        r["speedup"] = r["images_per_s"] / ref
        print(f"{r['what']:<32} {r['setting']:<26} {r['seconds'] * 1e3:9.1f} ms "
              f"{r['images_per_s']:9.0f} img/s {r['speedup']:7.1f}x", flush=True)
    if not args.quick:
        save("gpu_speed", {"machine": machine(), "cuda": torch.cuda.is_available() and
                           torch.cuda.get_device_name(), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
