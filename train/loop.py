"""The one training loop: optimizer steps grouped in phases, behind every recipe.

A recipe (``train.stage_recipe`` for ``python -m train.stage1/2/3``,
``train.shallow`` for the shallow cascade) describes its phases (each with
its optimizer, LR schedule and trained parameters) and its loss, and decides
what to log, when to checkpoint and where a run may stop. The loop does the
rest the same way for all: gradient accumulation with DDP's ``no_sync``,
mixed precision with a gradient scaler, clipping, the progress line, stop
signals agreed across ranks, and checkpoints followed by a barrier.
"""
from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from . import distributed as D
from .feedback import MetricLog, Progress


@dataclass
class Phase:
    """Optimizer steps ``first .. last`` (global, 1-based) with one optimizer and schedule."""

    first: int
    last: int
    optimizer: torch.optim.Optimizer
    lr_schedule: object
    params: list                 # what the optimizer trains (and what is clipped)
    net: torch.nn.Module         # what runs the forward pass: the model or its DDP wrapper
    lr_every: int = 1            # steps between LR-schedule steps (an epoch for StepLR per epoch)
    grad_clip: float = 1.0       # max gradient norm (0 = off)
    number: int = 1


class Recipe:
    """What the loop asks of a training recipe. Subclasses fill in every method."""

    total_steps: int
    grad_accum: int = 1
    scaler: torch.amp.GradScaler

    def phases(self, start: int) -> Iterator[Phase]:
        """The phases that hold steps after ``start``, built as the loop reaches them."""
        raise NotImplementedError

    def loss(self, phase: Phase, batch: dict, step: int) -> torch.Tensor:
        """The scalar loss of one micro-batch at optimizer step ``step``."""
        raise NotImplementedError

    def after_step(self, phase: Phase, step: int, loss: float, seconds: float, log, progress):
        """Bookkeeping once a step's update is applied: EMA, logs, progress, previews."""
        raise NotImplementedError

    def log_position(self, start: int) -> int:
        """The ``step`` field of the last metrics line a run starting at ``start`` keeps."""
        raise NotImplementedError

    def may_stop_after(self, step: int) -> bool:
        """True where a run may stop and resume exactly (every step, or at epoch ends)."""
        raise NotImplementedError

    def budget_spent(self, step: int) -> bool:
        """True when a time or step budget of this invocation is used up."""
        raise NotImplementedError

    def checkpoint_due(self, step: int) -> bool:
        """True at steps that write a checkpoint (the last step and stops always do)."""
        raise NotImplementedError

    def save(self, phase: Phase, step: int):
        """Write the training state and stage files for ``step`` (rank 0 only)."""
        raise NotImplementedError


class TrainingStopped(SystemExit):
    """Raised once a stop signal's state is saved: the CLI exits 0, and a program that calls
    ``train`` in-process (a benchmark chaining several runs) stops too instead of starting its
    next step."""

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
        """Put back the handlers that were there before."""
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def run_feedback(rt, feedback: dict, total: int, start: int, logged: int):
    """Log (kept up to the ``logged`` position), progress bar and stop-signal handling of a run
    (``feedback``: ``out``, ``tensorboard``, ``progress``); closed and torn down however it
    ends."""
    log = MetricLog(feedback["out"], feedback["tensorboard"], start=logged) if rt.is_main else None
    progress = Progress(total, start, feedback["progress"] and rt.is_main)
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


def run_phases(recipe: Recipe, rt, batches, start: int, feedback: dict) -> int:
    """Train from step ``start`` to ``recipe.total_steps``, phase by phase; returns the last
    step run. Under torchrun, a collective that fails (a rank frozen past
    ``--collective-timeout``, or gone) ends the run with an error naming the rank.

    ``feedback`` holds ``out``, ``tensorboard`` and ``progress`` for ``run_feedback``.
    """
    position = {"step": start}
    with run_feedback(rt, feedback, total=recipe.total_steps, start=start,
                      logged=recipe.log_position(start)) as (log, progress, stop):
        try:
            _run_steps(recipe, rt, batches, position=position, log=log, progress=progress,
                       stop=stop)
        except RuntimeError as e:  # torch.distributed's errors (DistBackendError included)
            if rt.world == 1:
                raise
            raise D.lost_rank_error(rt, e, step=position["step"]) from None
    return position["step"]


def _run_steps(recipe: Recipe, rt, batches, position: dict, log, progress, stop):
    start = position["step"]
    for phase in recipe.phases(start):
        for step in range(max(phase.first, start + 1), phase.last + 1):
            position["step"] = step
            t0 = time.time()
            loss = optimizer_step(recipe, phase, rt, batches=batches, step=step)
            if (step - phase.first + 1) % phase.lr_every == 0:
                phase.lr_schedule.step()
            recipe.after_step(phase, step, loss, seconds=time.time() - t0, log=log,
                              progress=progress)
            halt = recipe.may_stop_after(step) and step < recipe.total_steps and D.any_rank(
                stop.flag or recipe.budget_spent(step), rt)
            if recipe.checkpoint_due(step) or step == recipe.total_steps or halt:
                if rt.is_main:
                    recipe.save(phase, step)
                D.barrier(rt)
            if halt:
                if rt.is_main:
                    print(f"\nstopped at step {step}; resume with --resume", flush=True)
                return


def optimizer_step(recipe: Recipe, phase: Phase, rt, batches, step: int) -> float:
    """One optimizer step over ``recipe.grad_accum`` micro-batches; returns their summed loss."""
    total = 0.0
    for m in range(recipe.grad_accum):
        batch = {k: v.to(rt.device) for k, v in next(batches).items()}
        sync = m == recipe.grad_accum - 1 or rt.world == 1
        with (contextlib.nullcontext() if sync else phase.net.no_sync()), D.autocast_for(rt):
            loss = recipe.loss(phase, batch, step) / recipe.grad_accum
        recipe.scaler.scale(loss).backward()
        total += float(loss.detach())
    recipe.scaler.unscale_(phase.optimizer)
    if phase.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(phase.params, phase.grad_clip)
    recipe.scaler.step(phase.optimizer)
    recipe.scaler.update()
    phase.optimizer.zero_grad(set_to_none=True)
    return total
