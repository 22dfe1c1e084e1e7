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
from dataclasses import asdict, replace
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from cascade_core import CascadeError, Stage, save_stage

from . import distributed as D
from .cli import add_dataclass_flags
from .config import load_file
from .data import BatchOrder, PairMaker, loader, open_source
from .folder_lock import run_lock
from .loop import Phase, Recipe, run_phases
from .lpips import LPIPS
from .perceptual import PerceptualLoss
from .shallow_model import ShallowCascade
from .shallow_train_config import ShallowTrainConfig, stage_configs, teacher_forcing
from .state import STATE_PATTERN, find_resume, load_parts, prepare_out, prune, save_parts

# the seed of optimizer step k's own generator on rank r is
# (seed * STEP_SEED_MIX + k) * RANK_SEED_SLOTS + r: distinct for every (seed, step, rank) of any
# run shorter than STEP_SEED_MIX steps on at most RANK_SEED_SLOTS ranks
STEP_SEED_MIX = 1_000_003
RANK_SEED_SLOTS = 64


def phase_of(cfg: ShallowTrainConfig, epoch: int) -> tuple[int, int, int]:
    """(phase, epoch within it, epochs in it) of a global epoch index."""
    for phase, n in ((1, cfg.phase1_epochs), (2, cfg.phase2_epochs), (3, cfg.phase3_epochs)):
        if epoch < n:
            return phase, epoch, n
        epoch -= n
    raise IndexError("epoch beyond the schedule")


class ShallowRecipe(Recipe):
    """Three phases of epochs (coarse warm-up, upsampler + refiner, joint), each with its own
    AdamW and StepLR per epoch; teacher forcing falls linearly within phases 2 and 3; the stages
    are written every epoch."""

    def __init__(self, cfg: ShallowTrainConfig, rt, model: ShallowCascade, per_epoch: int,
                 state_path: Path | None, stop_after_epochs: int):
        self.cfg, self.rt, self.model, self.out = cfg, rt, model, Path(cfg.out)
        self.stages = {"coarse": model.coarse, "upsampler": model.upsampler,
                       "refiner": model.refiner}
        self.per_epoch, self.state_path = per_epoch, state_path
        self.stop_after_epochs = stop_after_epochs
        self.total_epochs = cfg.phase1_epochs + cfg.phase2_epochs + cfg.phase3_epochs
        self.total_steps = self.total_epochs * per_epoch
        match = STATE_PATTERN.match(state_path.name) if state_path else None
        self.start_epoch = int(match.group(1)) if match else 0
        self.scaler = torch.amp.GradScaler(rt.device.type, enabled=rt.scaler)
        self.sums, self.written, self.teacher_p, self.epoch_seconds = {}, {}, 1.0, 0.0

    def phases(self, start):
        """Phases 1-3 that still hold epochs after ``start``; a resumed run restores the model,
        and the optimizer too when it stopped inside that phase."""
        cfg, first_epoch = self.cfg, 0
        for number, epochs in ((1, cfg.phase1_epochs), (2, cfg.phase2_epochs),
                               (3, cfg.phase3_epochs)):
            last_epoch = first_epoch + epochs
            if epochs and last_epoch > self.start_epoch:
                self.model.set_phase(number)
                params = [p for p in self.model.parameters() if p.requires_grad]
                opt = torch.optim.AdamW(params, lr=cfg.lr)
                sched = torch.optim.lr_scheduler.StepLR(opt, cfg.lr_step, cfg.lr_gamma)
                if self.state_path is not None and first_epoch <= self.start_epoch:
                    # a state saved inside a phase also carries that phase's optimizer
                    mid_phase = self.start_epoch > first_epoch
                    extra = {"optimizer": opt, "lr_schedule": sched,
                             "scaler": self.scaler} if mid_phase else {}
                    load_parts(self.state_path, {"model": self.model, **extra})
                net = DistributedDataParallel(self.model) if self.rt.world > 1 else self.model
                yield Phase(first=first_epoch * self.per_epoch + 1,
                            last=last_epoch * self.per_epoch, optimizer=opt, lr_schedule=sched,
                            params=params, net=net, lr_every=self.per_epoch, grad_clip=1.0,
                            number=number)
            first_epoch = last_epoch

    def loss(self, phase, batch, step):
        """The phase's losses of the three stages, summed; the terms are kept for the epoch's
        log line."""
        cfg, i = self.cfg, step - 1  # i: the step's 0-based index in the run
        done_in_phase = i - (phase.first - 1)
        self.teacher_p = teacher_forcing(cfg, phase.number,
                                         done_in_phase / max(1, phase.last - phase.first))
        losses = phase.net(batch["x_high"], batch["x_low"], batch["label"], phase=phase.number,
                           teacher_p=self.teacher_p,
                           seed=(cfg.seed * STEP_SEED_MIX + i) * RANK_SEED_SLOTS + self.rt.rank)
        for k, v in losses.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v.mean().detach())
        return sum(v.mean() for v in losses.values())

    def after_step(self, phase, step, loss, seconds, log, progress):
        """Progress every step; at an epoch's end the log line with the epoch's mean losses."""
        lr = phase.optimizer.param_groups[0]["lr"]
        progress.update(step, loss=loss, images_per_s=self.cfg.batch_size / max(seconds, 1e-9),
                        lr=lr)
        self.epoch_seconds += seconds
        if step % self.per_epoch == 0:
            if self.rt.is_main:
                log.write(step // self.per_epoch, phase=phase.number,
                          teacher_forcing=self.teacher_p, epoch_seconds=self.epoch_seconds,
                          **{f"loss_{k}": v / self.per_epoch for k, v in self.sums.items()})
            self.sums, self.epoch_seconds = {}, 0.0

    def log_position(self, start):
        """Metrics lines are numbered by epoch."""
        return start // self.per_epoch

    def may_stop_after(self, step):
        """At epoch ends: states are written per epoch."""
        return step % self.per_epoch == 0

    def budget_spent(self, step):
        """``--stop-after-epochs`` is used up."""
        done = step // self.per_epoch - self.start_epoch
        return bool(self.stop_after_epochs) and done >= self.stop_after_epochs

    def checkpoint_due(self, step):
        """Every epoch's end."""
        return step % self.per_epoch == 0

    def save(self, phase, step):
        """The three stage files (with their epoch count) and the state of the phase."""
        epoch = step // self.per_epoch
        for name, st in self.stages.items():
            st.config = replace(st.config, training={**st.config.training, "epochs": epoch})
            self.written[name] = save_stage(st, self.out / f"{name}.safetensors")
        save_parts(self.out, epoch, {"model": self.model, "optimizer": phase.optimizer,
                                     "lr_schedule": phase.lr_schedule, "scaler": self.scaler},
                                     cfg_dict=asdict(self.cfg))
        prune(self.out, self.cfg.keep)


def train_shallow(cfg: ShallowTrainConfig, resume: str = "", stop_after_epochs: int = 0) -> dict:
    """Train the three stages of the shallow cascade; returns the stage files written, by name.
    The run holds its folder's lock throughout (``folder_lock``)."""
    rt = D.setup(cfg.device, cfg.precision, timeout=cfg.collective_timeout)
    data = open_source(cfg, cfg.resolution, log=print if rt.is_main else None)
    with run_lock(Path(cfg.out), active=rt.is_main):
        return _train(cfg, rt, data=data, resume=resume, stop_after_epochs=stop_after_epochs)


def _train(cfg: ShallowTrainConfig, rt, *, data, resume: str, stop_after_epochs: int) -> dict:
    out = Path(cfg.out)
    source, skipped = data
    torch.manual_seed(cfg.seed)
    configs = stage_configs(cfg, source.num_classes, source.class_names)
    stages = {k: Stage(c) for k, c in configs.items()}
    perceptual = None
    if cfg.perceptual_weight > 0:
        perceptual = LPIPS(cfg.lpips_backbone,
                           cfg.lpips_linear) if cfg.lpips_backbone or cfg.lpips_linear \
            else PerceptualLoss(cfg.perceptual or None)
    model = ShallowCascade(stages["coarse"], stages["upsampler"], stages["refiner"],
                           perceptual=perceptual,
                           perceptual_weight=cfg.perceptual_weight).to(rt.device)
    per_epoch = max(1, (cfg.epoch_size or len(source)) // cfg.batch_size)
    recipe = ShallowRecipe(cfg, rt, model, per_epoch=per_epoch,
                           state_path=find_resume(out, resume), stop_after_epochs=stop_after_epochs)
    start = recipe.start_epoch * per_epoch
    maker = PairMaker(cfg.resolution, cfg.coarse_res, True, label_dropout=cfg.label_dropout)
    order = BatchOrder(batch=cfg.batch_size, steps=recipe.total_steps, seed=cfg.seed,
                       start_step=start)
    batches = iter(loader(source, maker, order, workers=cfg.workers, rank=rt.rank,
                          world=rt.world))
    if rt.is_main:
        prepare_out(out, skipped)
        sizes = {k: f"{s.config.network} {s.num_parameters() / 1e6:.2f}M"
                 for k, s in stages.items()}
        print(f"shallow cascade {sizes}; perceptual: "
              f"{perceptual.source if perceptual else 'none'}; "
              f"{per_epoch} steps/epoch; epochs {recipe.start_epoch}->{recipe.total_epochs}",
              flush=True)
    run_phases(recipe, rt, batches, start=start,
               feedback={"out": out, "tensorboard": cfg.tensorboard, "progress": cfg.progress})
    return recipe.written


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.shallow", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="", help="JSON or TOML file with any of the keys below")
    p.add_argument("--resume", nargs="?", const="auto", default="",
                   help="continue from the newest state in --out")
    p.add_argument("--stop-after-epochs", type=int, default=0,
                   help="stop (with a state) after this many epochs")
    add_dataclass_flags(p, ShallowTrainConfig)
    args = p.parse_args(argv)
    try:
        values = {k: v for k, v in vars(args).items()
                  if v is not None and k not in ("config", "resume", "stop_after_epochs")}
        cfg = ShallowTrainConfig(**{**(load_file(args.config,
                                                 ShallowTrainConfig) if args.config else {}),
                                                 **values})
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
