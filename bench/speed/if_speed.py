"""DeepFloyd IF's U-Nets at their released shapes: ours against diffusers', side by side.

    python -m bench.speed.if_speed            # IF-I-XL in bf16, IF-II-L in fp32 and bf16
    python -m bench.speed.if_speed --quick    # shrunk shapes, seconds (ours alone if no diffusers)

Random weights of the released shapes (the configs in ../shared/if-configs;
IF-II-L's missing fields completed as diffusers' convert_if.py sets them), one
denoiser evaluation of a batch of 2 (one image with classifier-free guidance)
with 77 tokens of T5-XXL width. One model is in memory at a time (IF-I-XL is
8.6 GB in bf16): ours, then diffusers' ``UNet2DConditionModel`` built from the
same config, then ours again, so the two runs of ours show how much the machine
drifted meanwhile. Prints seconds per evaluation (median), diffusers / ours (> 1:
ours is faster), the achieved GFLOP/s (PyTorch's flop counter) and their share
of this CPU's measured 3x3-convolution peak in that precision.
"""
from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

import torch

import cascade_core as cc
from cascade_core.formats import deepfloyd_config

from ..common import forward_flops, machine, peak_conv_flops, save

SHARED = Path(__file__).resolve().parents[3] / "shared" / "if-configs"
# IF-II-L's published config stops after resnet_skip_time_act; convert_if.py sets these
IF_II_L_COMPLETION = dict(time_embedding_act_fn="gelu", time_embedding_dim=160 * 8,
                          sample_size=256, up_block_types=["SimpleCrossAttnUpBlock2D"] * 2
                          + ["ResnetUpsampleBlock2D"] * 3)
QUICK = dict(act_fn="gelu", resnet_time_scale_shift="scale_shift", sample_size=16, in_channels=3,
             out_channels=6, block_out_channels=[32, 64], layers_per_block=1,
             cross_attention_dim=64, encoder_hid_dim=48, encoder_hid_dim_type="text_proj",
             addition_embed_type="text", addition_embed_type_num_heads=4, attention_head_dim=16,
             mid_block_type="UNetMidBlock2DSimpleCrossAttn", cross_attention_norm="group_norm",
             down_block_types=["ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"],
             up_block_types=["SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"])
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
TOKENS, BATCH = 77, 2


def configs(quick: bool) -> dict:
    """name -> diffusers config of the shapes to time."""
    if quick:
        return {"quick": QUICK}
    xl = json.loads((SHARED / "IF-I-XL-v1.0.unet.config.json").read_text())
    ii = json.loads((SHARED / "IF-II-L-v1.0.unet.config.partial.json").read_text())
    return {"IF-I-XL": xl, "IF-II-L": {**ii, **IF_II_L_COMPLETION}}


def random_(model: torch.nn.Module):
    """Weights of order one in every layer (norm scales 1, others ~ 1/sqrt(fan-in))."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.normal_(0, p[0].numel() ** -0.5)
            else:
                p.fill_(1.0 if name.endswith("weight") else 0.0)


def build(contender: str, config: dict, dtype: torch.dtype):
    """(model, call) with random weights in ``dtype``, built without a float32 copy."""
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        if contender == "ours":
            cfg = deepfloyd_config.from_diffusers(config, "bench")
            with torch.device("meta"):
                model = cc.Stage(cfg)
            model = model.to_empty(device="cpu")
            random_(model)
            return model.eval(), _ours_call
        from diffusers import UNet2DConditionModel
        clean = {k: v for k, v in config.items() if not k.startswith("_")}
        model = UNet2DConditionModel(**clean).eval()
        random_(model)
        return model, _diffusers_call
    finally:
        torch.set_default_dtype(default)


def inputs(config: dict) -> dict:
    g = torch.Generator().manual_seed(0)
    size, width = config["sample_size"], config.get("encoder_hid_dim") or 4096
    out = {"x": torch.randn(BATCH, 3, size, size, generator=g), "t": torch.tensor([500.0] * BATCH),
           "text": torch.randn(BATCH, TOKENS, width, generator=g)}
    if config.get("in_channels", 3) == 6:
        out["cond"] = torch.randn(BATCH, 3, size, size, generator=g).clamp(-1, 1)
        out["level"] = torch.tensor([250] * BATCH)
    return out


def _ours_call(model, inp):
    extra = {} if "cond" not in inp else {"cond": inp["cond"],
                                          "aug_level": inp["level"].float() / 1000}
    return model(inp["x"], inp["t"], text=inp["text"], **extra)


def _diffusers_call(model, inp):
    x = inp["x"] if "cond" not in inp else torch.cat([inp["x"], inp["cond"]], dim=1)
    return model(x, inp["t"], encoder_hidden_states=inp["text"],
                 class_labels=inp.get("level")).sample


def evaluate(model, call, inp, *, dtype: torch.dtype):
    """One evaluation as it is timed, in inference mode: weights and inputs all in ``dtype``
    (autocast cannot run weights stored in bf16: its float32 layer norms refuse them, in
    diffusers' model as in ours), the timestep as given."""
    cast = {k: v.to(dtype) if v.is_floating_point() and k != "t" else v for k, v in inp.items()}
    with torch.inference_mode():
        call(model, cast)


def seconds(model, call, inp, *, dtype: torch.dtype, repeats: int) -> list[float]:
    """Times of ``repeats`` evaluations (``evaluate``) after one warm-up."""
    def once():
        evaluate(model, call, inp, dtype=dtype)
    once()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        once()
        times.append(time.perf_counter() - t0)
    return times


def row(name: str, config: dict, *, dtype_name: str, repeats: int) -> dict:
    """Ours, diffusers', ours again: medians, ratio, GFLOP/s and share of the conv peak."""
    dtype, inp = DTYPES[dtype_name], inputs(config)
    order = ["ours", "diffusers", "ours"]
    if importlib.util.find_spec("diffusers") is None:
        order = ["ours"]
    times, flops = {}, None
    for k, contender in enumerate(order):
        model, call = build(contender, config, dtype)
        if flops is None:
            flops = forward_flops(lambda m=model, c=call: evaluate(m, c, inp, dtype=dtype))
        times.setdefault(contender, []).extend(seconds(model, call, inp, dtype=dtype,
                                                       repeats=repeats))
        print(f"  {name} {dtype_name} {contender} run {k + 1}: "
              f"{statistics.median(times[contender][-repeats:]):.2f} s", flush=True)
        del model
        gc.collect()
    ours = statistics.median(times["ours"])
    result = {"shape": name, "dtype": dtype_name, "batch": BATCH, "tokens": TOKENS,
              "gflop": flops / 1e9, "seconds": {k: statistics.median(v) for k, v in times.items()},
              "ours_runs": times["ours"], "gflops_ours": flops / ours / 1e9}
    if "diffusers" in times:
        result["diffusers_over_ours"] = statistics.median(times["diffusers"]) / ours
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.speed.if_speed", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    native = cc.precision.native_dtypes("cpu")
    plan = [("quick", "fp32")] if args.quick else [("IF-I-XL", "bf16"), ("IF-II-L", "fp32"),
                                                    ("IF-II-L", "bf16")]
    plan = [(n, d) for n, d in plan if d in native]
    peaks = {d: peak_conv_flops(64 if args.quick else 256, dtype=DTYPES[d], stored=True)
             for d in {d for _, d in plan}}
    rows = []
    for name, dtype_name in plan:
        r = row(name, configs(args.quick)[name], dtype_name=dtype_name,
                repeats=1 if args.quick else args.repeats)
        r["share_of_conv_peak"] = r["gflops_ours"] * 1e9 / peaks[dtype_name]
        rows.append(r)
        ratio = r.get("diffusers_over_ours")
        print(f"{name} {dtype_name}: ours {r['seconds']['ours']:.2f} s per evaluation"
              + (f", diffusers {r['seconds']['diffusers']:.2f} s, diffusers/ours {ratio:.2f}x"
                 if ratio else " (diffusers is not installed)")
              + f"; {r['gflop']:.0f} GFLOP, {r['gflops_ours']:.0f} GFLOP/s = "
              f"{r['share_of_conv_peak']:.0%} of the conv peak", flush=True)
    if not args.quick:
        out = save("if_speed", {"rows": rows, "peaks_gflops": {k: v / 1e9 for k, v in
                                                               peaks.items()},
                                "machine": machine()})
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
