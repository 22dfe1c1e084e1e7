"""Progressive distillation of any diffusion stage: ``python -m train.distill``.

    python -m train.distill --teacher weights/cifar10-base16.safetensors --teacher-steps 8 \\
        --student-steps 4 --data ../shared/data/cifar10/train --out runs/base16-4steps

Each round trains a student, starting from its teacher's weights, to take two of the teacher's
DDIM steps in one (``cascade_core.run.distillation``), halving the steps: 8 -> 4 is one round,
8 -> 2 two, each in ``OUT/round<k>-<n>steps`` with the previous round's student as its teacher.
The run is the stage recipe's (checkpoints, ``--resume``, DDP through ``torchrun``, bf16
autocast, EMA); only the loss differs. The data is the teacher's kind of data (images, and for
an SR stage the same low-res conditioning and augmentation levels as its training, amortized
over the levels). Every student records its lineage and how it must be sampled (DDIM, its steps,
trailing spacing: ``StageConfig.sampling``), which the nodes follow when their steps are 0.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from cascade_core import CascadeError, SamplingConfig, StageConfig, read_config
from cascade_core.run.distillation import (
    SAMPLER,
    SPACING,
    distillation_loss,
    midpoints,
    student_sigmas,
)

from .cli import add_dataclass_flags, say_error
from .config import TrainConfig, load_file, validate
from .options import option
from .stage_recipe import Plain, StageRecipe, train

# a round's optimizer defaults (flags, a --config file or a resumed run's record override them):
# a short fine-tuning from the teacher's weights, linearly decayed to 0 as the paper does
ROUND_DEFAULTS = dict(steps=2000, batch_size=64, lr=5e-5, warmup=0, lr_decay="linear",
                      min_lr_ratio=0.0, ema_decay=0.999, sample_every=0, checkpoint_every=500,
                      crop=0)
RECORD = "distill.json"  # the run's settings, which --resume continues with


@dataclass
class DistillConfig(TrainConfig):
    """A distillation run: the stage recipe's settings (``--steps`` per round) and the teacher."""

    teacher: str = option("", "the stage file to distil (a diffusion stage of ours, or a released "
                              "one converted to ours)")
    teacher_steps: int = option(0, "the DDIM steps the teacher samples well at (0: a distilled "
                                   "teacher's own steps)", min=0, max=4096)
    student_steps: int = option(0, "the steps of the last round's student (0: half the teacher's, "
                                   "one round)", min=0, max=4096)


def digest(path) -> str:
    """The teacher file's content digest: a resumed round must distil the same file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(2 ** 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


class Distillation(Plain):
    """One round: the student of ``steps`` steps learns its teacher's two steps in one."""

    def __init__(self, teacher_path: Path, *, steps: int, round_: int):
        self.path, self.steps, self.round = Path(teacher_path), steps, round_
        self.digest = digest(self.path)
        self.recipe = self._recipe

    def student(self, config: StageConfig) -> StageConfig:
        """The teacher's config, predicting v (an eps teacher's student too), recording how it
        samples and where it came from."""
        parent = config.training.get("parent") or {}
        lineage = {"teacher": str(self.path), "teacher_digest": self.digest,
                   "teacher_steps": 2 * self.steps, "round": self.round,
                   "teacher_lineage": parent.get("distillation")}
        param = config.parameterization if config.parameterization in ("v", "x0") else "v"
        return replace(config, parameterization=param,
                       sampling=SamplingConfig(SAMPLER, self.steps, SPACING),
                       training={**config.training, "distillation": lineage})

    def check_resume(self, recorded: StageConfig):
        """A round resumes only with the teacher file it started from."""
        was = recorded.training.get("distillation") or {}
        if was.get("teacher_digest") != self.digest:
            raise CascadeError("this distillation round was started with another teacher: resume "
                               "with the same file (or start a new --out)",
                               f"{was.get('teacher')} ({was.get('teacher_digest')})",
                               f"{self.path.name} ({self.digest})")

    def _recipe(self, cfg, rt, model, *, out, preview_set, start):
        recipe = DistillRecipe(cfg, rt, model, out=out, preview_set=preview_set, start=start)
        recipe.teach(load_teacher(self.path).to(rt.device).eval(), steps=self.steps)
        return recipe


class DistillRecipe(StageRecipe):
    """The stage recipe with the distillation loss: each example's timestep picks one of the
    student's grid steps (uniformly), its noise and conditioning are the stage recipe's."""

    def teach(self, teacher, *, steps: int):
        """The teacher (frozen) and the student's step count."""
        self.teacher = teacher
        for p in teacher.parameters():
            p.requires_grad_(False)
        sigmas = student_sigmas(self.model, steps)
        self.grid, self.steps = (sigmas, midpoints(self.model, sigmas)), steps
        scfg = self.model.config
        T = scfg.schedule.timesteps
        self.t_max = max(1, int(scfg.refiner_max_t * T)) if scfg.role == "refiner" else T

    def loss(self, phase, batch, step):
        """The mean distillation loss of one micro-batch."""
        batch = self.with_text(batch)
        index = (batch["t"].long().cpu() * self.steps) // self.t_max
        batch = {**batch, "step": index.clamp(max=self.steps - 1)}
        return distillation_loss(self.model, self.teacher, batch, grid=self.grid,
                                 model=phase.net).mean()


def load_teacher(path: Path):
    """The teacher stage in fp32, refused when it is not sampled by diffusion."""
    from cascade_core import load_stage

    stage = load_stage(path, dtype=torch.float32)
    if stage.config.method != "diffusion":
        raise CascadeError(f"--teacher {path.name} is not a diffusion stage: nothing to distil",
                           "a diffusion stage (a U-Net)", f"a {stage.config.describe()} stage "
                           f"({stage.config.method})")
    return stage


def rounds(cfg: DistillConfig, teacher: StageConfig) -> list[int]:
    """The students' step counts, one per round (teacher_steps / 2, / 4, ... down to
    student_steps)."""
    recorded = teacher.sampling.steps
    start = cfg.teacher_steps or recorded
    if not start:
        raise CascadeError("say how many DDIM steps the teacher samples well at",
                           "--teacher-steps N (e.g. 16)", "none")
    if recorded and start != recorded:
        raise CascadeError(f"--teacher {Path(cfg.teacher).name} is a distilled stage made for "
                           f"{recorded} steps", f"--teacher-steps {recorded}", start)
    last = cfg.student_steps or start // 2
    if last >= start:
        raise CascadeError("a round halves the teacher's steps: the student needs fewer",
                           f"--student-steps < --teacher-steps ({start})", last)
    ratio = start / max(last, 1)
    if last < 1 or ratio != 2 ** round(math.log2(ratio)):
        raise CascadeError("each round halves the steps: the teacher's over the student's must "
                           "be a power of two", f"e.g. {start} -> {start // 2} or "
                           f"{start // 4 or 1}", f"{start} -> {last}")
    return [start // 2 ** k for k in range(1, int(math.log2(ratio)) + 1)]


def resolve(values: dict, teacher: StageConfig) -> DistillConfig:
    """The run's config: the round defaults, then the file or the resumed record, then the
    flags; the stage's role and sizes are the teacher's."""
    no_null = teacher.num_classes and not teacher.null_class
    if no_null and values.get("label_dropout"):
        raise CascadeError("this teacher has no null class (ADM's): every example needs its class",
                           "--label-dropout 0", values["label_dropout"])
    cfg = DistillConfig(**{**ROUND_DEFAULTS, **({"label_dropout": 0.0} if no_null else {}),
                           **values, "role": teacher.role, "resolution": teacher.resolution,
                           "low_res": teacher.low_res if teacher.role != "base" else 0})
    validate(cfg)
    return cfg


def parse(argv=None) -> tuple[DistillConfig, str]:
    p = argparse.ArgumentParser(prog="python -m train.distill", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="", help="JSON or TOML file with any of the keys below")
    p.add_argument("--resume", nargs="?", const="auto", default="",
                   help="continue the run in --out (the unfinished round)")
    skip = {"role", "resolution", "low_res", "preset", "base_channels", "channel_mult",
            "num_res_blocks", "attention_resolutions", "num_heads", "dropout", "schedule",
            "timesteps", "parameterization", "learn_sigma", "noise_conditioning", "upsample",
            "aug_schedule", "s_max", "default_s", "refiner_max_t", "crop", "crop_fraction"}
    add_dataclass_flags(p, DistillConfig, skip, shown={k: repr(v) if isinstance(v, str) else v
                                                       for k, v in ROUND_DEFAULTS.items()})
    args = p.parse_args(argv)
    values = {k: v for k, v in vars(args).items() if v is not None and k not in ("config",
                                                                                 "resume")}
    recorded = {}
    record = Path(values.get("out", TrainConfig.out)) / RECORD
    if args.resume and record.is_file():  # continue the run as it was started; flags still win
        recorded = json.loads(record.read_text())
    values = {**recorded, **(load_file(args.config, DistillConfig) if args.config else {}),
              **values}
    if not values.get("teacher"):
        raise CascadeError("no teacher given", "--teacher STAGE.safetensors", "nothing")
    if not Path(values["teacher"]).is_file():
        raise CascadeError("teacher stage file not found", "an existing .safetensors",
                           values["teacher"])
    if not values.get("data"):
        raise CascadeError("no training data given", "--data PATH (the teacher's kind of data)",
                           "nothing")
    return resolve(values, read_config(values["teacher"])[0]), args.resume


def distill(cfg: DistillConfig, resume: str = "") -> Path:
    """Every round in turn (a finished round is kept and skipped); the last student's file."""
    teacher = Path(cfg.teacher)
    load_teacher(teacher)  # clear errors before anything is written
    plan = rounds(cfg, read_config(teacher)[0])
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / RECORD).write_text(json.dumps(asdict(cfg), indent=1))
    for k, steps in enumerate(plan, 1):
        folder = out / f"round{k}-{steps}steps"
        done = folder / "latest.safetensors"
        if done.is_file() and read_config(done)[0].training.get("steps") == cfg.steps:
            print(f"round {k} ({2 * steps} -> {steps} steps) already done: {done}", flush=True)
        else:
            print(f"round {k}: {2 * steps} -> {steps} steps, teacher {teacher}", flush=True)
            round_cfg = replace(cfg, out=str(folder))
            again = "auto" if resume or (folder / "config.json").is_file() else ""
            train(round_cfg, again, init_from=str(teacher),
                  kind=Distillation(teacher, steps=steps, round_=k))
        teacher = done
    return teacher


def main(argv=None) -> int:
    try:
        cfg, resume = parse(argv)
        path = distill(cfg, resume)
    except CascadeError as e:
        return say_error(e)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
