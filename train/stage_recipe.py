"""The recipe behind python -m train.stage1/2/3: one stage, one phase, EMA, step-wise LR."""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from cascade_core import (
    EMA,
    CascadeError,
    Stage,
    StageConfig,
    compile_stage,
    image_grid,
    load_stage,
    read_config,
    training_loss,
)
from cascade_core.base.memory import check_fits
from cascade_core.models.budget import parameter_count
from cascade_core.run.tiling import estimate_bytes

from . import distributed as D
from .captions import EMPTY, TextTable, prepare_text
from .config import TrainConfig, stage_config, training_record
from .data import BatchOrder, ExampleMaker, ImageSource, KeyedDataset, loader, open_source
from .feedback import save_png
from .folder_lock import run_lock
from .loop import Phase, Recipe, run_phases
from .previews import preview_rows
from .state import (
    find_resume,
    load_parts,
    prepare_out,
    prune,
    recorded_architecture,
    save_parts,
    save_stage_files,
    stage_parts,
)


def lr_factor(cfg: TrainConfig, step: int) -> float:
    """Learning-rate multiplier after ``step`` steps: linear warmup, then cosine, linear or
    constant decay."""
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    if cfg.lr_decay == "constant":
        return 1.0
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    shape = 0.5 * (1 + math.cos(math.pi * progress)) if cfg.lr_decay == "cosine" else 1 - progress
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * shape


def build_stage(cfg: TrainConfig, source: ImageSource, init_from: str | None, *,
                recorded: StageConfig | None = None, text: TextTable | None = None) -> Stage:
    """A new stage from the config, or the stage of ``init_from`` to fine-tune (same role), or,
    when resuming, the architecture the run recorded (its state's weights replace these).
    ``text``: a text stage's encoded captions, whose encoder the stage records."""
    if recorded is not None:
        check_same_encoder(recorded.training.get("text_encoder"), text)
        return Stage(recorded)
    if not init_from:
        scfg = stage_config(cfg, source.num_classes, source.class_names,
                            text=text.config() if text else None)
        if text is not None:
            scfg = replace(scfg, training={**scfg.training, "text_encoder": text.record()})
        return Stage(scfg)
    init_cfg, _ = read_config(init_from)
    if init_cfg.role != cfg.role:
        raise CascadeError(f"--init-from {Path(init_from).name} is a {init_cfg.role} stage",
                           f"a {cfg.role} stage", init_cfg.role)
    want = text.config() if text else None
    if (init_cfg.text.width, init_cfg.text.encoder) != ((want.width, want.encoder) if want
                                                        else (0, "")):
        raise CascadeError(f"--init-from {Path(init_from).name} takes other text than this run",
                           f"{want.encoder} ({want.width})" if want else "no text",
                           f"{init_cfg.text.encoder} ({init_cfg.text.width})"
                           if init_cfg.text.width else "no text")
    if source.num_classes and init_cfg.num_classes != source.num_classes:
        raise CascadeError("the data's classes do not match the stage's", init_cfg.num_classes,
                           source.num_classes)
    stage = load_stage(init_from, dtype=torch.float32)
    # this run's record, not the parent's: its data, batch and lr, with the lineage kept
    record = {**training_record(cfg), "parent": init_cfg.training}
    if text is not None:
        record["text_encoder"] = text.record()
    stage.config = replace(stage.config, training=record)
    return stage


def check_same_encoder(was: dict | None, text: TextTable | None):
    """A resumed run encodes its captions with the encoder it started with (or none, if none)."""
    now = None if text is None else text.record()
    if was != now:
        def say(rec):
            return "no text encoder" if not rec else f"{rec['name']} ({rec['fingerprint']})"
        raise CascadeError("the text encoder changed since the run started: resume with the one "
                           "it started with (or start a new --out)", say(was), say(now))


def _config_of(cfg: TrainConfig, source: ImageSource, init_from: str) -> StageConfig:
    """The StageConfig the run will build (from ``--init-from``'s file, or the flags)."""
    if init_from:
        return read_config(init_from)[0]
    return stage_config(cfg, source.num_classes, source.class_names)


def check_memory(cfg: TrainConfig, scfg: StageConfig, rt):
    """Refuse, before anything is allocated or written, a run whose training step would not fit:
    weights, gradients, the two AdamW moments and the EMA copy, plus the activations a
    micro-batch keeps for the backward pass (twice the forward estimate)."""
    params = parameter_count(scfg)
    micro = max(1, cfg.batch_size // cfg.grad_accum // rt.world)
    size = cfg.crop if cfg.crop and cfg.crop_fraction == 1 else scfg.resolution
    need = params * 4 * 5 + 2 * estimate_bytes(scfg, (micro, size, size))
    check_fits(f"a training step of {params / 1e6:,.1f}M parameters on a micro-batch of "
               f"{micro} images of {size} px (--batch-size {cfg.batch_size}, --grad-accum "
               f"{cfg.grad_accum})", need, device=rt.device)


class StageRecipe(Recipe):
    """Train one diffusion stage with AdamW, a warmup + decay schedule per step and an EMA copy."""

    def __init__(self, cfg: TrainConfig, rt, model: Stage, out: Path, preview_set, start: int):
        self.cfg, self.rt, self.model, self.out, self.preview_set = cfg, rt, model, out, preview_set
        self.total_steps, self.grad_accum, self.start = cfg.steps, cfg.grad_accum, start
        self.ema = EMA(model, cfg.ema_decay, cfg.ema_warmup)
        self.opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.lr_sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: lr_factor(cfg, s))
        self.scaler = torch.amp.GradScaler(rt.device.type, enabled=rt.scaler)
        self.t_start = time.time()
        self.last_path = None
        self.text = None  # a text stage's caption embeddings, rows as in train.captions

    def parts(self) -> dict:
        """What a state file holds for this recipe."""
        return stage_parts(self.model, self.ema, self.opt, lr_sched=self.lr_sched,
                           scaler=self.scaler)

    def phases(self, start):
        """One phase over every step, with DDP when there are several processes."""
        rt = self.rt
        net = self.model
        if rt.world > 1:
            ids = [rt.device] if rt.device.type == "cuda" else None
            net = DistributedDataParallel(self.model, device_ids=ids)
        yield Phase(first=1, last=self.cfg.steps, optimizer=self.opt, lr_schedule=self.lr_sched,
                    params=list(self.model.parameters()), net=net, grad_clip=self.cfg.grad_clip)

    def loss(self, phase, batch, step):
        """The stage's training loss (simple, hybrid, min-SNR weighted) on one micro-batch; a
        text stage's examples carry their caption's row where a class stage's carry the class
        (-1, dropped: the empty caption)."""
        batch = self.with_text(batch)
        terms = training_loss(self.model, batch, min_snr_gamma=self.cfg.min_snr_gamma or None,
                              model=phase.net)
        return terms["loss"].mean()

    def with_text(self, batch: dict) -> dict:
        """A text stage's batch: its examples' caption rows (where a class stage's carry the
        class; -1, dropped, is the empty caption) turned into their token embeddings."""
        if self.text is None:
            return batch
        rows = batch["label"].clamp(min=EMPTY).to(self.text.device)
        return {**batch, "text": self.text[rows].to(batch["x0"].device), "label": None}

    def after_step(self, phase, step, loss, seconds, log, progress):
        """EMA update, the metrics line every ``log_every`` steps, progress, preview grids."""
        cfg, rt = self.cfg, self.rt
        self.ema.update(self.model)
        ips = cfg.batch_size / seconds
        lr = self.opt.param_groups[0]["lr"]
        if step % cfg.log_every == 0 or step == cfg.steps:
            loss = _mean_across(loss, rt)
            if rt.is_main:
                log.write(step, loss=loss, lr=lr, images_per_s=ips)
        progress.update(step, loss=loss, images_per_s=ips, lr=lr, force=step == cfg.steps)
        if rt.is_main and cfg.sample_every and step % cfg.sample_every == 0:
            grid = image_grid(preview_rows(self.ema.model, self.preview_set, cfg))
            save_png(grid, self.out / "samples" / f"{step:07d}.png", 2)

    def log_position(self, start):
        """Metrics lines are numbered by step."""
        return start

    def may_stop_after(self, step):
        """Every step: the state holds everything the next one needs."""
        return True

    def budget_spent(self, step):
        """``--max-seconds`` or ``--stop-after`` is used up."""
        cfg = self.cfg
        out_of_time = cfg.max_seconds > 0 and time.time() - self.t_start > cfg.max_seconds
        return out_of_time or (cfg.stop_after > 0 and step - self.start >= cfg.stop_after)

    def checkpoint_due(self, step):
        """Every ``--checkpoint-every`` steps."""
        return step % self.cfg.checkpoint_every == 0

    def save(self, phase, step):
        """State file, EMA stage files, and pruning to ``--keep``."""
        save_parts(self.out, step, self.parts(), cfg_dict=asdict(self.cfg))
        self.last_path = save_stage_files(self.out, step, self.ema, batch_size=self.cfg.batch_size)
        prune(self.out, self.cfg.keep)


def example_maker(cfg: TrainConfig, scfg: StageConfig) -> ExampleMaker:
    """What turns one training image into an example for this stage (crop, flip, label dropout,
    timestep, noise, and for SR/refiner stages the augmented condition)."""
    aug = scfg.augmentation
    dropout = cfg.caption_dropout if scfg.text.width else cfg.label_dropout
    return ExampleMaker(role=scfg.role, resolution=scfg.resolution, low_res=scfg.low_res,
                        crop=cfg.crop, crop_fraction=cfg.crop_fraction,
                        batch=cfg.batch_size, flip=cfg.flip, label_dropout=dropout,
                        timesteps=scfg.schedule.timesteps,
                        refiner_max_t=scfg.refiner_max_t,
                        s_max=aug.s_max if scfg.aug_input else 0.0,  # ADM-U: clean inputs
                        aug_schedule=aug.schedule,
                        blur_prob=aug.blur_prob, blur_range=aug.blur_sigma,
                        deblock=cfg.deblock, shift=cfg.shift)


class Plain:
    """What a run trains towards: the stage's own loss on data (``StageRecipe``). A variant (the
    distillation of ``train.distill``) changes the student's record and the loss, nothing else
    of the run."""

    recipe = None  # the Recipe class the run uses; None: StageRecipe

    def student(self, config: StageConfig) -> StageConfig:
        """The config of the stage this run trains, from the one it starts from."""
        return config

    def check_resume(self, recorded: StageConfig):
        """Refuse resuming a run that was started towards something else."""


def train(cfg: TrainConfig, resume: str = "", init_from: str = "", *,
          kind: Plain | None = None) -> Path | None:
    """Train one stage; returns the path of the last stage checkpoint written (on rank 0). The run
    holds its folder's lock throughout (``folder_lock``): one writer per folder. ``kind``: what
    the run trains towards (default: the stage's own loss)."""
    kind = kind or Plain()
    rt = D.setup(cfg.device, cfg.precision, timeout=cfg.collective_timeout)
    data = open_source(cfg, cfg.resolution, log=print if rt.is_main else None)
    state_path = find_resume(Path(cfg.out), resume)
    recorded = recorded_architecture(state_path.parent) if state_path is not None else None
    check_memory(cfg, recorded or _config_of(cfg, data[0], init_from), rt)  # nothing written yet
    if recorded is not None:
        kind.check_resume(recorded)
    with run_lock(Path(cfg.out), active=rt.is_main):
        return _train(cfg, rt, data=data, resume_from=(state_path, recorded),
                      init_from=init_from, kind=kind)


def _train(cfg: TrainConfig, rt, *, data, resume_from: tuple, init_from: str,
           kind: Plain) -> Path | None:
    out = Path(cfg.out)
    source, skipped = data
    state_path, recorded = resume_from
    text = None
    if cfg.captions:  # the examples carry each image's caption row (train.captions)
        was = recorded.training.get("text_encoder") if recorded is not None else None
        text = prepare_text(cfg, source, out=out, rt=rt, resumed=was)
        source.labels, source.class_names = text.ids, ()
    torch.manual_seed(cfg.seed)
    model = build_stage(cfg, source, init_from, recorded=recorded, text=text)
    if recorded is None:
        model.config = kind.student(model.config)
    model = model.to(rt.device).train()
    scfg = model.config
    start = 0
    recipe = (kind.recipe or StageRecipe)(cfg, rt, model, out=out, preview_set=None, start=start)
    recipe.text = None if text is None else text.tokens.to(rt.device)
    if cfg.compile:  # after the EMA copy was taken: only the trained network is compiled
        compile_stage(model, log=print if rt.is_main else (lambda *a: None))
    if state_path is not None:
        start = recipe.start = load_parts(state_path, recipe.parts())
    maker = example_maker(cfg, scfg)
    if rt.is_main:
        prepare_out(out, skipped)
        (out / "config.json").write_text(json.dumps({**asdict(cfg), "stage": scfg.to_dict()},
                                                    indent=1))
        print(f"{scfg.describe()}: {model.num_parameters() / 1e6:.2f}M parameters, {len(source)} "
              "images, "
              f"{source.num_classes or 'no'} classes, {rt.world} process(es) on {rt.device}, "
              f"steps {start}->{cfg.steps}", flush=True)
    recipe.preview_set = KeyedDataset(source, maker)
    recipe.preview_set.text = text
    order = BatchOrder(batch=cfg.batch_size, steps=cfg.steps, seed=cfg.seed, start_step=start,
                       accum=cfg.grad_accum)
    batches = iter(loader(source, maker, order, workers=cfg.workers, rank=rt.rank,
                          world=rt.world))
    run_phases(recipe, rt, batches, start=start,
               feedback={"out": out, "tensorboard": cfg.tensorboard, "progress": cfg.progress})
    return recipe.last_path


def _mean_across(value: float, rt) -> float:
    if rt.world == 1:
        return value
    t = torch.tensor([value], device=rt.device)
    torch.distributed.all_reduce(t)
    return float(t.item()) / rt.world
