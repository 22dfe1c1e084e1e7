"""The one training loop behind stage1, stage2 and stage3."""
from __future__ import annotations

import contextlib
import json
import math
import signal
import time
from dataclasses import asdict
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from cascade_core import EMA, CascadeError, Stage, image_grid, load_stage, read_config, training_loss

from . import distributed as D
from .config import TrainConfig, stage_config
from .data import ExampleMaker, ImageSource, KeyedDataset, loader
from .feedback import MetricLog, Progress, save_png
from .previews import preview_rows
from .state import find_resume, load_parts, prune, save_parts, save_stage_files, stage_parts


def lr_factor(cfg: TrainConfig, step: int) -> float:
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    if cfg.lr_decay == "constant":
        return 1.0
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    shape = 0.5 * (1 + math.cos(math.pi * progress)) if cfg.lr_decay == "cosine" else 1 - progress
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * shape


def build_stage(cfg: TrainConfig, source: ImageSource, init_from: str | None) -> Stage:
    if not init_from:
        return Stage(stage_config(cfg, source.num_classes, source.class_names))
    init_cfg, _ = read_config(init_from)
    if init_cfg.role != cfg.role:
        raise CascadeError(f"--init-from {Path(init_from).name} is a {init_cfg.role} stage",
                           f"a {cfg.role} stage", init_cfg.role)
    if source.num_classes and init_cfg.num_classes != source.num_classes:
        raise CascadeError("the data's classes do not match the stage's", init_cfg.num_classes,
                           source.num_classes)
    return load_stage(init_from, dtype=torch.float32)


class TrainingStopped(SystemExit):
    """Raised once a stop signal's state is saved: the CLI exits 0, and a program that calls ``train``
    in-process (a benchmark chaining several runs) stops too instead of starting its next step."""

    def __init__(self):
        super().__init__(0)


class StopSignal:
    """SIGTERM / SIGINT set a flag; the loop saves a state at the end of the step and exits."""

    def __init__(self):
        self.flag = False
        self.previous = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(ValueError):  # not in the main thread
                self.previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        self.flag = True

    def restore(self):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def run_feedback(rt, out: Path, tensorboard: bool, show_progress: bool, total: int, start: int):
    """Log, progress bar and stop-signal handling of a run; closed and torn down however it ends."""
    log = MetricLog(out, tensorboard) if rt.is_main else None
    progress = Progress(total, start, show_progress and rt.is_main)
    stop = StopSignal()
    try:
        yield log, progress, stop
    finally:
        progress.close()
        stop.restore()
        if log:
            log.close()
        D.teardown()
    if stop.flag:
        raise TrainingStopped()


def train(cfg: TrainConfig, resume: str = "", init_from: str = "") -> Path | None:
    """Train one stage; returns the path of the last stage checkpoint written (on rank 0)."""
    rt = D.setup(cfg.device, cfg.precision)
    out = Path(cfg.out)
    source = ImageSource(cfg.data)
    torch.manual_seed(cfg.seed)
    model = build_stage(cfg, source, init_from).to(rt.device).train()
    scfg = model.config
    ema = EMA(model, cfg.ema_decay, cfg.ema_warmup)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    lr_sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(cfg, s))
    scaler = torch.amp.GradScaler(rt.device.type, enabled=rt.scaler)
    start = 0
    state_path = find_resume(out, resume)
    if state_path is not None:
        start = load_parts(state_path, stage_parts(model, ema, opt, lr_sched, scaler))
    net = DistributedDataParallel(model, device_ids=[rt.device] if rt.device.type == "cuda" else None) \
        if rt.world > 1 else model
    maker = ExampleMaker(scfg.role, scfg.resolution, scfg.low_res, cfg.crop, cfg.flip, cfg.label_dropout,
                         scfg.schedule.timesteps, scfg.refiner_max_t, scfg.augmentation.s_max,
                         scfg.augmentation.schedule, scfg.augmentation.blur_prob, scfg.augmentation.blur_sigma)
    if rt.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps({**asdict(cfg), "stage": scfg.to_dict()}, indent=1))
        print(f"{scfg.describe()}: {model.num_parameters() / 1e6:.2f}M parameters, {len(source)} images, "
              f"{source.num_classes or 'no'} classes, {rt.world} process(es) on {rt.device}, "
              f"steps {start}->{cfg.steps}", flush=True)
    preview_set = KeyedDataset(source, maker)
    batches = iter(loader(source, maker, cfg, rt.rank, rt.world, start))
    t_start, last_path, step = time.time(), None, start
    with run_feedback(rt, out, cfg.tensorboard, cfg.progress, cfg.steps, start) as (log, progress, stop):
        for step in range(start + 1, cfg.steps + 1):
            t0 = time.time()
            loss = _optimizer_step(cfg, rt, model, net, opt, scaler, batches)
            lr_sched.step()
            ema.update(model)
            ips = cfg.batch_size / (time.time() - t0)
            if step % cfg.log_every == 0 or step == cfg.steps:
                loss = _mean_across(loss, rt)
                if rt.is_main:
                    log.write(step, loss=loss, lr=opt.param_groups[0]["lr"], images_per_s=ips)
            progress.update(step, loss, ips, opt.param_groups[0]["lr"], force=step == cfg.steps)
            if rt.is_main and cfg.sample_every and step % cfg.sample_every == 0:
                save_png(image_grid(preview_rows(ema.model, preview_set, cfg)), out / "samples" / f"{step:07d}.png", 2)
            out_of_time = cfg.max_seconds > 0 and time.time() - t_start > cfg.max_seconds
            slice_done = cfg.stop_after > 0 and step - start >= cfg.stop_after
            halt = D.any_rank(stop.flag or out_of_time or slice_done, rt) and step < cfg.steps
            if step % cfg.checkpoint_every == 0 or step == cfg.steps or halt:
                if rt.is_main:
                    save_parts(out, step, stage_parts(model, ema, opt, lr_sched, scaler), asdict(cfg))
                    last_path = save_stage_files(out, step, ema, cfg.batch_size)
                    prune(out, cfg.keep)
                D.barrier(rt)
            if halt:
                if rt.is_main:
                    print(f"\nstopped at step {step}; resume with --resume", flush=True)
                break
    return last_path


def _optimizer_step(cfg, rt, model, net, opt, scaler, batches) -> float:
    total = 0.0
    for m in range(cfg.grad_accum):
        batch = {k: v.to(rt.device) for k, v in next(batches).items()}
        sync = m == cfg.grad_accum - 1 or rt.world == 1
        with (contextlib.nullcontext() if sync else net.no_sync()), D.autocast_for(rt):
            terms = training_loss(model, batch["x0"], batch["t"], batch["noise"], batch.get("cond"),
                                  batch.get("s"), batch["label"], cfg.min_snr_gamma or None, model=net)
            loss = terms["loss"].mean() / cfg.grad_accum
        scaler.scale(loss).backward()
        total += float(loss.detach())
    scaler.unscale_(opt)
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    scaler.step(opt)
    scaler.update()
    opt.zero_grad(set_to_none=True)
    return total


def _mean_across(value: float, rt) -> float:
    if rt.world == 1:
        return value
    t = torch.tensor([value], device=rt.device)
    torch.distributed.all_reduce(t)
    return float(t.item()) / rt.world
