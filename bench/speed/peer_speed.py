"""Our U-Net against diffusers' UNet2DModel (and guided-diffusion's own) at the same settings.

    python -m bench.speed.peer_speed           # shipped sizes: sampling at batch 1/16/64 and
                                                  # a training step, fp32 and bf16
    python -m bench.speed.peer_speed --adm [--guided PATH/guided-diffusion]
                                                  # ADM 64 px and 64->256 shapes, batch 1 and 4
    python -m bench.speed.peer_speed --levers  # channels_last and torch.compile, both sides
    python -m bench.speed.peer_speed --profile sr16to32 --batch 16 --dtype fp32
                                                  # where the time goes, both sides
    python -m bench.speed.peer_speed --quick            # seconds; what CI runs

Every row times the contenders in alternation in one process (median of --repeats, spread
shown) on the same inputs, threads and precision (bf16 = autocast, where this CPU computes it
natively), and prints ours/theirs (> 1: ours is faster), the achieved GFLOP/s and the share of
this machine's measured 3x3-convolution and matmul peaks in that precision. diffusers is
installed only for this benchmark (pip install diffusers); without it, ours is timed alone.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import time

import torch

import cascade_core as cc

from ..common import alternating, forward_flops, peak_conv_flops, peak_matmul_flops, save
from . import peers

SHIPPED = {
    "base16": cc.StageConfig(role="base", resolution=16, num_classes=10,
                             unet=cc.UNetConfig(32, (1, 2, 2), 2, attention_resolutions=(8,),
                                                num_heads=4)),
    "sr16to32": cc.StageConfig(role="sr", resolution=32, low_res=16, num_classes=10,
                               unet=cc.UNetConfig(32, (1, 2, 2), 2, attention_resolutions=(),
                                                  num_heads=4)),
}
QUICK = {"base8": cc.StageConfig(role="base", resolution=8, num_classes=10,
                                 unet=cc.UNetConfig(32, (1, 2), 1, attention_resolutions=(4,),
                                                    num_heads=4))}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
LEVERS = ("eager", "channels_last", "compile", "channels_last+compile")


def contenders(cfg, guided: str | None = None, name: str = "") -> dict:
    """name -> (model, call) for every peer that can be built here."""
    out = {"ours": peers.ours(cfg)}
    if importlib.util.find_spec("diffusers") is not None:
        out["diffusers"] = peers.diffusers_unet(cfg)
    if guided:
        out["guided"] = peers.guided_unet(name, guided)
    return out


def sampling_row(models: dict, cfg, *, batch: int, dtype: str, repeats: int,
                 warmup: int = 1) -> dict:
    """One denoiser evaluation of a batch, each contender, in alternation."""
    inp = peers.inputs(cfg, batch)

    def run(m, call):
        with torch.inference_mode(), torch.autocast("cpu", dtype=DTYPES[dtype],
                                                    enabled=dtype != "fp32"):
            call(m, inp)
    times = alternating({k: (lambda m=m, c=c: run(m, c)) for k, (m, c) in models.items()},
                        repeats=repeats, warmup=warmup)
    return {"batch": batch, "dtype": dtype, "what": "sampling", "seconds": times}


def training_row(models: dict, cfg, *, batch: int, dtype: str, repeats: int,
                 warmup: int = 1) -> dict:
    """Forward, backward and AdamW step on a batch, each contender, in alternation."""
    inp = peers.inputs(cfg, batch)
    x = inp.x
    opts = {k: torch.optim.AdamW(m.parameters(), 1e-4) for k, (m, _) in models.items()}

    def step(k):
        m, call = models[k]
        m.train()
        with torch.autocast("cpu", dtype=DTYPES[dtype], enabled=dtype != "fp32"):
            loss = (call(m, inp)[:, :3].float() - x).pow(2).mean()
        opts[k].zero_grad(set_to_none=True)
        loss.backward()
        opts[k].step()
        m.eval()
    times = alternating({k: (lambda k=k: step(k)) for k in models}, repeats=repeats,
                        warmup=warmup)
    return {"batch": batch, "dtype": dtype, "what": "training", "seconds": times}


def annotate(row: dict, flops: float, peaks: dict) -> dict:
    """Ratios ours/peer, and our achieved GFLOP/s against the peaks (training = 3x forward)."""
    sec = {k: v["median"] for k, v in row["seconds"].items()}
    row["ratio"] = {k: sec[k] / sec["ours"] for k in sec if k != "ours"}
    work = flops * row["batch"] * (3 if row["what"] == "training" else 1)
    row["gflops_per_s"] = work / sec["ours"] / 1e9
    row["share_of_conv_peak"] = work / sec["ours"] / peaks[f"conv_{row['dtype']}"]
    row["share_of_matmul_peak"] = work / sec["ours"] / peaks[f"matmul_{row['dtype']}"]
    return row


def show(name: str, row: dict):
    s = row["seconds"]
    cells = "  ".join(f"{k} {v['median']:.4f}s [{v['min']:.4f}-{v['max']:.4f}]"
                      for k, v in s.items())
    ratios = "  ".join(f"ours/{k} {r:.2f}x" for k, r in row["ratio"].items())
    print(f"{name:<11} {row['what']:<8} b{row['batch']:<3} {row['dtype']}  {cells}  {ratios}  "
          f"{row['gflops_per_s']:.0f} GFLOP/s = {row['share_of_conv_peak']:.0%} of conv peak, "
          f"{row['share_of_matmul_peak']:.0%} of matmul peak", flush=True)


def measure_peaks(quick: bool) -> dict:
    have = cc.precision.native_dtypes("cpu")
    peaks = {}
    for name, dtype in DTYPES.items():
        if name in have:
            peaks[f"matmul_{name}"] = peak_matmul_flops(512 if quick else 2048, dtype=dtype)
            peaks[f"conv_{name}"] = peak_conv_flops(64 if quick else 256, dtype=dtype)
    print("measured peaks (GFLOP/s): " + ", ".join(f"{k} {v / 1e9:.0f}" for k, v in peaks.items()))
    return peaks


def evaluation_flops(model_and_call, cfg) -> float:
    """FLOPs of one evaluation of one image (PyTorch's flop counter)."""
    model, call = model_and_call
    inp = peers.inputs(cfg, 1)
    with torch.inference_mode():
        return forward_flops(lambda: call(model, inp))


def table(configs: dict, plan: dict, opts) -> dict:
    """Every (config, what, batch, dtype) of ``plan``; rows keyed by config name."""
    peaks = measure_peaks(opts.quick)
    dtypes = [d for d in DTYPES if f"conv_{d}" in peaks]
    rows = {}
    for name, cfg in configs.items():
        if opts.only and name not in opts.only.split(","):
            continue
        torch.manual_seed(0)
        models = contenders(cfg, opts.guided if name in peers.ADM else None, name=name)
        flops = evaluation_flops(models["ours"], cfg)
        rows[name] = {"gflops_per_image": flops / 1e9, "rows": []}
        for what, batches in plan.items():
            make = sampling_row if what == "sampling" else training_row
            for batch in batches:
                for dtype in dtypes:
                    row = make(models, cfg, batch=batch, dtype=dtype, repeats=opts.repeats,
                               warmup=opts.warmup)
                    row = annotate(row, flops, peaks)
                    rows[name]["rows"].append(row)
                    show(name, row)
    return {"peaks_gflops": {k: v / 1e9 for k, v in peaks.items()}, "configs": rows}


def levers(opts) -> dict:
    """channels_last, torch.compile and both, for both sides: the SR stage at batch 16; the
    first call's time is the compile time."""
    cfg = (QUICK if opts.quick else SHIPPED)["base8" if opts.quick else "sr16to32"]
    batch = 4 if opts.quick else 16
    out = {}
    for lever in opts.lever_list:
        torch.manual_seed(0)
        models = contenders(cfg)
        for k, (m, call) in list(models.items()):
            if lever.startswith("channels_last"):
                m = peers.to_channels_last(m)
            if lever.endswith("compile"):
                m = torch.compile(m)
            models[k] = (m, call)
        for dtype in [d for d in DTYPES if d in cc.precision.native_dtypes("cpu")]:
            first = first_call_seconds(models, cfg, batch=batch, dtype=dtype)  # = compile time
            row = {**sampling_row(models, cfg, batch=batch, dtype=dtype, repeats=opts.repeats),
                   "first_call_s": first}
            out[f"{lever} {dtype}"] = row
            print(f"{lever:<22} {dtype}  " + "  ".join(
                f"{k} {v['median']:.4f}s [{v['min']:.4f}-{v['max']:.4f}] (first call "
                f"{first[k]:.1f}s)" for k, v in row["seconds"].items()), flush=True)
    return out


def first_call_seconds(models: dict, cfg, *, batch: int, dtype: str) -> dict:
    """Seconds of each contender's first evaluation (for a compiled model: its compile time)."""
    inp = peers.inputs(cfg, batch)
    out = {}
    for k, (m, call) in models.items():
        t0 = time.perf_counter()
        with torch.inference_mode(), torch.autocast("cpu", dtype=DTYPES[dtype],
                                                    enabled=dtype != "fp32"):
            call(m, inp)
        out[k] = time.perf_counter() - t0
    return out


def profile_ops(name: str, *, batch: int, dtype: str, calls: int = 5):
    """Where the time goes: torch.profiler's self-CPU table of ``calls`` evaluations, each
    contender, one after the other (for any ratio below 1.0x)."""
    from torch.profiler import profile

    cfg = {**SHIPPED, **QUICK, **peers.ADM}[name]
    inp = peers.inputs(cfg, batch)
    for label, (m, call) in contenders(cfg).items():
        with torch.inference_mode(), torch.autocast("cpu", dtype=DTYPES[dtype],
                                                    enabled=dtype != "fp32"):
            for _ in range(2):
                call(m, inp)
            with profile() as prof:
                for _ in range(calls):
                    call(m, inp)
        print(f"== {label}: {calls} evaluations of {name} at batch {batch}, {dtype}")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.speed.peer_speed", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--adm", action="store_true", help="the ADM 64 px and 64->256 shapes")
    p.add_argument("--guided", default=None, help="path of a guided-diffusion clone (--adm)")
    p.add_argument("--levers", action="store_true", help="channels_last and torch.compile")
    p.add_argument("--which-levers", default=",".join(LEVERS),
                   help=f"comma-separated, of {','.join(LEVERS)} (--levers)")
    p.add_argument("--quick", action="store_true", help="a tiny configuration, seconds (CI)")
    p.add_argument("--profile", default="", metavar="CONFIG",
                   help="print where the time goes for CONFIG (e.g. sr16to32) at --batch and "
                        "--dtype, both contenders, instead of timing")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--only", default="", help="comma-separated configurations to time (e.g. "
                                              "adm64)")
    p.add_argument("--batches", default="", help="comma-separated sampling batches instead of "
                                                 "the defaults")
    p.add_argument("--dtype", default="fp32", choices=tuple(DTYPES))
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1,
                   help="untimed calls of each contender before the timed ones (per row)")
    p.add_argument("--threads", type=int, default=0)
    opts = p.parse_args(argv)
    opts.lever_list = [v.strip() for v in opts.which_levers.split(",") if v.strip()]
    if set(opts.lever_list) - set(LEVERS):
        p.error(f"--which-levers: expected some of {LEVERS}, found {opts.which_levers}")
    if opts.threads:
        torch.set_num_threads(opts.threads)
    if importlib.util.find_spec("diffusers") is None:
        print("diffusers is not installed: timing our model alone (pip install diffusers)")
    if opts.quick:
        opts.repeats = 2
    if opts.profile:
        profile_ops(opts.profile, batch=opts.batch, dtype=opts.dtype)
        return 0
    if opts.levers:
        result, name = {"levers": levers(opts)}, "peer_levers"
    elif opts.adm:
        batches = tuple(int(b) for b in opts.batches.split(",")) if opts.batches else (1, 4)
        result, name = table(peers.ADM, {"sampling": batches}, opts), "peer_adm"
    else:
        plan = ({"sampling": (1, 4), "training": (4,)} if opts.quick else
                {"sampling": (1, 16, 64), "training": (64,)})
        result, name = table(QUICK if opts.quick else SHIPPED, plan, opts), "peer_speed"
    if not opts.quick:
        print(f"wrote {save(name, {'threads': torch.get_num_threads(), **result})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
