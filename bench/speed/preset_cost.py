"""Cost per optimizer step of each training preset on this machine.

    python -m bench.speed.preset_cost            # all stages and presets
    python -m bench.speed.preset_cost --quick    # tiny preset only (CI)

Each preset's model is built exactly as the training scripts build it and
trained for a few steps on random data (the data pipeline is excluded). The
``base`` preset (CDM appendix B, batch 2048) cannot run at its batch on a CPU:
its cost is measured at a small batch and extrapolated linearly to the full
batch, which the table says.
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

import cascade_core as cc
from train.config import resolve, stage_config

from ..common import save

ENTRIES = {"stage1": "base", "stage2": "sr", "stage3": "refiner"}


def training_step(cfg, batch: int, *, device="cpu", dtype=None):
    """(a closure doing one optimizer step of ``cfg``'s stage on random data, the stage): the
    model built as the training scripts build it, bf16/fp16 autocast when ``dtype`` is given."""
    stage = cc.Stage(stage_config(cfg, 10, ())).to(device).train()
    opt = torch.optim.AdamW(stage.parameters(), lr=1e-4)
    size = cfg.crop or cfg.resolution
    factor = cfg.resolution // cfg.low_res if cfg.role == "sr" else 1
    x = torch.randn(batch, 3, size, size, device=device)
    cond = (torch.randn(batch, 3, size // factor, size // factor, device=device)
            if cfg.role != "base" else None)
    s = torch.rand(batch, device=device) if cond is not None else None

    def step():
        with torch.autocast(torch.device(device).type, dtype=dtype, enabled=dtype is not None):
            examples = {"x0": x, "t": torch.randint(0, cfg.timesteps, (batch,), device=device),
                        "noise": torch.randn_like(x), "cond": cond, "s": s,
                        "label": torch.randint(0, 10, (batch,), device=device)}
            loss = cc.training_loss(stage, examples)
        opt.zero_grad(set_to_none=True)
        loss["loss"].mean().backward()
        opt.step()
    return step, stage


def step_seconds(cfg, batch: int, steps: int) -> float:
    step, stage = training_step(cfg, batch)
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        step()
        if i:
            times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2], stage.num_parameters()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.speed.preset_cost", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--base-batch", type=int, default=4, help="batch measured for the base preset")
    args = p.parse_args(argv)
    presets = ["tiny"] if args.quick else ["tiny", "small", "base"]
    rows = []
    print(f"{'entry':<7} {'preset':<6} {'params':>9} {'res':>7} {'batch':>6} {'s/step':>9} "
          f"{'img/s':>7}  note")
    for entry, role in ENTRIES.items():
        for preset in presets:
            cfg = resolve(role, preset, {}, cli_values={"data": "-"})
            measured = cfg.batch_size if preset != "base" else args.base_batch
            sec, params = step_seconds(cfg, measured, 1 if preset == "base" else args.steps)
            full = sec * cfg.batch_size / measured
            note = f"extrapolated from batch {measured}" if measured != cfg.batch_size else ""
            size = f"{cfg.crop or cfg.resolution}px" + ("(crop)" if cfg.crop else "")
            rows.append({"entry": entry, "preset": preset, "params": params, "train_size": size,
                         "batch": cfg.batch_size, "seconds_per_step": full,
                         "measured_batch": measured})
            print(f"{entry:<7} {preset:<6} {params / 1e6:8.2f}M {size:>7} {cfg.batch_size:>6} "
                  f"{full:9.2f} "
                  f"{cfg.batch_size / full:7.1f}  {note}", flush=True)
    if not args.quick:
        save("preset_cost", {"rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
