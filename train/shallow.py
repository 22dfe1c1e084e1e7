"""Train the shallow cascade of the CIFAR-10 report in three phases (python -m train.shallow).

    python -m train.shallow --data ../shared/data/cifar10/train --out runs/shallow \\
        --coarse diffusion --upsampler pixelshuffle --refiner vit

Phase 1 warms up the coarse 16px stage; phase 2 freezes it and trains the
upsampler and refiner, feeding the upsampler the ground-truth low-res image
with a teacher-forcing probability that falls linearly (0.9 -> 0.1) and the
coarse stage's output otherwise; phase 3 trains all three jointly (0.1 -> 0),
with gradients flowing into the coarse stage through one evaluation of it.
Each phase has its own AdamW and StepLR. The three stages are written as
ordinary stage files (coarse/upsampler/refiner.safetensors) that the nodes
load. Checkpointing, resume, torchrun/DDP, signals and logging are the ones of
train.stage1/2/3.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from types import SimpleNamespace

import torch
from torch.nn.parallel import DistributedDataParallel

from cascade_core import CascadeError, Stage, save_stage

from . import distributed as D
from .cli import add_dataclass_flags
from .config import load_file
from .data import ImageSource, PairMaker, loader
from .loop import run_feedback
from .lpips import LPIPS
from .perceptual import PerceptualLoss
from .shallow_config import ShallowTrainConfig, stage_configs, teacher_forcing
from .shallow_model import ShallowCascade
from .state import STATE_PATTERN, find_resume, load_parts, prune, save_parts


def phase_of(cfg: ShallowTrainConfig, epoch: int) -> tuple[int, int, int]:
    """(phase, epoch within it, epochs in it) of a global epoch index."""
    for phase, n in ((1, cfg.phase1_epochs), (2, cfg.phase2_epochs), (3, cfg.phase3_epochs)):
        if epoch < n:
            return phase, epoch, n
        epoch -= n
    raise IndexError("epoch beyond the schedule")


def train_shallow(cfg: ShallowTrainConfig, resume: str = "", stop_after_epochs: int = 0) -> dict:
    rt = D.setup(cfg.device, cfg.precision)
    out, source = Path(cfg.out), ImageSource(cfg.data)
    torch.manual_seed(cfg.seed)
    stages = {k: Stage(c) for k, c in stage_configs(cfg, source.num_classes, source.class_names).items()}
    perceptual = None
    if cfg.perceptual_weight > 0:
        perceptual = LPIPS(cfg.lpips_backbone, cfg.lpips_linear) if cfg.lpips_backbone or cfg.lpips_linear \
            else PerceptualLoss(cfg.perceptual or None)
    model = ShallowCascade(stages["coarse"], stages["upsampler"], stages["refiner"], perceptual,
                           cfg.perceptual_weight).to(rt.device)
    per_epoch = max(1, (cfg.epoch_size or len(source)) // cfg.batch_size)
    total_epochs = cfg.phase1_epochs + cfg.phase2_epochs + cfg.phase3_epochs
    state_path = find_resume(out, resume)
    start = int(STATE_PATTERN.search(state_path.name).group(1)) if state_path else 0
    data_cfg = SimpleNamespace(batch_size=cfg.batch_size, grad_accum=1, seed=cfg.seed, steps=total_epochs * per_epoch,
                               workers=cfg.workers)
    maker = PairMaker(cfg.resolution, cfg.coarse_res, True, cfg.label_dropout)
    batches = iter(loader(source, maker, data_cfg, rt.rank, rt.world, start * per_epoch))
    if rt.is_main:
        out.mkdir(parents=True, exist_ok=True)
        sizes = {k: f"{s.config.kind} {s.num_parameters() / 1e6:.2f}M" for k, s in stages.items()}
        print(f"shallow cascade {sizes}; perceptual: {perceptual.source if perceptual else 'none'}; "
              f"{per_epoch} steps/epoch; epochs {start}->{total_epochs}", flush=True)
    written, phase_setup = {}, None
    scaler = torch.amp.GradScaler(rt.device.type, enabled=rt.scaler)
    with run_feedback(rt, out, cfg.tensorboard, cfg.progress, total_epochs * per_epoch, start * per_epoch) as (
            log, progress, stop):
        for epoch in range(start, total_epochs):
            phase, e_in, n_in = phase_of(cfg, epoch)
            if phase_setup is None or phase_setup[0] != phase:
                model.set_phase(phase)
                opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
                sched = torch.optim.lr_scheduler.StepLR(opt, cfg.lr_step, cfg.lr_gamma)
                parts = {"model": model}
                if state_path is not None and epoch == start:
                    same_phase = e_in > 0  # a state saved mid-phase carries that phase's optimizer
                    load_parts(state_path, {**parts, **({"optimizer": opt, "lr_schedule": sched, "scaler": scaler}
                                                        if same_phase else {})})
                net = DistributedDataParallel(model) if rt.world > 1 else model
                phase_setup = (phase, opt, sched, net)
            _, opt, sched, net = phase_setup
            t0, sums = time.time(), {}
            for s in range(per_epoch):
                step = epoch * per_epoch + s
                batch = {k: v.to(rt.device) for k, v in next(batches).items()}
                p = teacher_forcing(cfg, phase, (e_in * per_epoch + s) / max(1, n_in * per_epoch - 1))
                with D.autocast_for(rt):
                    losses = net(batch["x_high"], batch["x_low"], batch["label"], phase, p,
                                 seed=(cfg.seed * 1_000_003 + step) * 64 + rt.rank)
                    loss = sum(v.mean() for v in losses.values())
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_([q for q in model.parameters() if q.requires_grad], 1.0)
                scaler.step(opt)
                scaler.update()
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + float(v.mean().detach())
                progress.update(step + 1, float(loss.detach()), cfg.batch_size / max(time.time() - t0, 1e-9) * (s + 1),
                                opt.param_groups[0]["lr"])
            sched.step()
            seconds = time.time() - t0
            if rt.is_main:
                log.write(epoch + 1, phase=phase, teacher_forcing=p, epoch_seconds=seconds,
                          **{f"loss_{k}": v / per_epoch for k, v in sums.items()})
                for name, st in stages.items():
                    st.config = replace(st.config, training={**st.config.training, "epochs": epoch + 1})
                    written[name] = save_stage(st, out / f"{name}.safetensors")
                save_parts(out, epoch + 1, {"model": model, "optimizer": opt, "lr_schedule": sched,
                                            "scaler": scaler}, asdict(cfg))
                prune(out, cfg.keep)
            D.barrier(rt)
            sliced = stop_after_epochs and epoch + 1 - start >= stop_after_epochs
            if D.any_rank(stop.flag or bool(sliced), rt) and epoch + 1 < total_epochs:
                if rt.is_main:
                    print(f"\nstopped after epoch {epoch + 1}; resume with --resume", flush=True)
                break
    return written


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.shallow", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="", help="JSON or TOML file with any of the keys below")
    p.add_argument("--resume", nargs="?", const="auto", default="", help="continue from the newest state in --out")
    p.add_argument("--stop-after-epochs", type=int, default=0, help="stop (with a state) after this many epochs")
    add_dataclass_flags(p, ShallowTrainConfig)
    args = p.parse_args(argv)
    try:
        values = {k: v for k, v in vars(args).items()
                  if v is not None and k not in ("config", "resume", "stop_after_epochs")}
        cfg = ShallowTrainConfig(**{**(load_file(args.config, ShallowTrainConfig) if args.config else {}), **values})
        if not cfg.data:
            raise CascadeError("no training data given", "--data PATH", "nothing")
        written = train_shallow(cfg, args.resume, args.stop_after_epochs)
    except CascadeError as e:
        lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
        print(f"error: {lines[-1] if lines else e}", file=sys.stderr)
        return 2
    for path in written.values():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
