"""Resumable training state, beside the stage files; written atomically, loaded without pickle code.

``state-NNNNNNN.pt`` holds model, EMA, optimizer, LR schedule, gradient-scaler
and RNG states plus the step (the data position follows from the step, since
every example is keyed to its global index). It is read with
``torch.load(weights_only=True)``, which refuses arbitrary objects.
"""
from __future__ import annotations

import json
import pickle
import re
import zipfile
from dataclasses import replace
from pathlib import Path

import torch

from cascade_core import CascadeError, StageConfig, save_stage
from cascade_core.formats.atomic import atomic_write

from .config import run_record

STATE_PATTERN = re.compile(r"^state-(\d{7,})\.pt$")
STAGE_PATTERN = re.compile(r"^stage-(\d{7,})\.safetensors$")
_told: set = set()  # folders whose foreign files were already reported


def save_parts(out: Path, step: int, parts: dict, cfg_dict: dict) -> Path:
    """Atomically write ``state-NNNNNNN.pt``: every part's state_dict, RNG states and the step."""
    state = {"step": step, "config": json.dumps(cfg_dict), "rng_cpu": torch.get_rng_state(),
             "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
             **{name: part.state_dict() for name, part in parts.items()}}
    return atomic_write(out / f"state-{step:07d}.pt", lambda tmp: torch.save(state, tmp))


def load_parts(path: Path, parts: dict) -> int:
    """Restore every part and the RNG states from a state file; returns its step."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # weights_only refused an object: not our state file
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise CascadeError(f"{path} is not a training state this tool wrote: it holds objects "
                           f"that a safe load refuses ({first})") from None
    except Exception as e:
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise CascadeError(f"cannot read training state {path}: the file is truncated or "
                           f"corrupt ({type(e).__name__}: {first})") from None
    missing = sorted(set(parts) - set(state))
    if missing:
        raise CascadeError(f"training state {path.name} does not match this run", sorted(parts),
                           f"missing {missing}")
    for name, part in parts.items():
        try:
            part.load_state_dict(state[name])
        except (RuntimeError, ValueError, KeyError) as e:
            first = str(e).strip().splitlines()[0][:160]
            raise CascadeError(f"training state {path.name} was written by a run with another "
                               f"architecture or optimizer ({name}: {first}); resume with that "
                               f"run's settings (--config {path.parent / 'config.json'})") from None
    torch.set_rng_state(state["rng_cpu"])
    if state["rng_cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng_cuda"])
    return int(state["step"])


def stage_parts(model, ema, opt, lr_sched, scaler) -> dict:
    """The parts of a single-stage run, under the names its state files use."""
    return {"model": model, "ema": ema, "optimizer": opt, "lr_schedule": lr_sched, "scaler": scaler}


def save_stage_files(out: Path, step: int, ema, batch_size: int) -> Path:
    """The EMA stage as a loadable checkpoint (its metadata records the steps and images of this
    run, and the images since training from scratch), plus ``latest.safetensors``."""
    cfg = ema.model.config
    parent = cfg.training.get("parent") or {}
    before = int(parent.get("images_seen_total", parent.get("images_seen", 0)))
    ema.model.config = replace(cfg, training={**cfg.training, "steps": step,
                                         "images_seen": step * batch_size,
                                         "images_seen_total": before + step * batch_size})
    path = save_stage(ema.model, out / f"stage-{step:07d}.safetensors")
    save_stage(ema.model, out / "latest.safetensors")
    return path


def recorded_architecture(folder: Path) -> StageConfig | None:
    """The stage architecture a run recorded in its ``config.json`` (None when it has none), so
    that a resumed fine-tuning run rebuilds the network it trained, whatever the flags say."""
    recorded = run_record(folder).get("stage")
    try:
        return StageConfig.from_dict(recorded) if recorded else None
    except (TypeError, ValueError, KeyError) as e:
        raise CascadeError(f"{Path(folder) / 'config.json'} holds no readable stage architecture "
                           f"({e})") from None


def numbered(out: Path, pattern: re.Pattern) -> list[Path]:
    """The files of ``out`` named exactly as this tool names its states (or stage files), oldest
    first; files that only look alike (``state-old.pt``, ``stage-best.safetensors``) are left
    alone, and said so once per folder."""
    ours, foreign = [], []
    prefix = pattern.pattern[1:6]  # "state" or "stage"
    for p in Path(out).glob(f"{prefix}-*"):
        (ours if pattern.match(p.name) else foreign).append(p)
    if foreign and (key := (str(out), prefix)) not in _told:
        _told.add(key)
        print(f"note: ignoring {len(foreign)} file(s) in {out} that are not this tool's "
              f"{prefix} files: {sorted(p.name for p in foreign)[:3]}", flush=True)
    return sorted(ours, key=lambda q: int(pattern.match(q.name).group(1)))


def intact(path: Path) -> str | None:
    """Why a state file cannot be read back (None when its archive is complete): a kill during
    a copy, or a full disk, leaves a truncated file."""
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
        return None if bad is None else f"its entry {bad} is corrupt"
    except (zipfile.BadZipFile, OSError) as e:
        return f"it is truncated or not a state file ({type(e).__name__})"


def find_resume(out: Path, resume: str) -> Path | None:
    """``resume`` is 'auto' (the newest intact state in ``out``, if any), a state file, or a
    folder; a truncated newest state falls back to the newest intact one, saying so."""
    if not resume:
        return None
    p = Path(resume) if resume != "auto" else out
    if p.is_file():
        return p
    states = numbered(p, STATE_PATTERN)
    for state in reversed(states):
        why = intact(state)
        if why is None:
            return state
        print(f"note: skipping {state.name}: {why}; resuming from an older state", flush=True)
    if states:
        raise CascadeError(f"no intact training state in {p}", "a state-*.pt written by this tool "
                           "that reads back", f"{len(states)} truncated or corrupt")
    if resume == "auto":
        return None
    raise CascadeError("nothing to resume from", f"a state-*.pt file in {p}", "none")


def prune(out: Path, keep: int):
    """Keep the newest ``keep`` state and stage files (only files of this tool's naming)."""
    for pattern in (STATE_PATTERN, STAGE_PATTERN):
        files = numbered(out, pattern)
        for old in files[:-keep] if keep > 0 else []:
            old.unlink(missing_ok=True)


def prepare_out(out: Path, skipped: list[str]):
    """Rank 0, before a run writes anything else: the output folder, without the temporary files
    of checkpoint writes a kill interrupted, and the list of images ``--bad-data skip`` left out."""
    out.mkdir(parents=True, exist_ok=True)
    for pattern in (".*.pt.*.tmp", ".*.safetensors.*.tmp"):
        for stale in out.glob(pattern):
            stale.unlink(missing_ok=True)
    if skipped:
        (out / "skipped.txt").write_text("".join(f + "\n" for f in skipped))
        print(f"left out {len(skipped)} unreadable image(s), listed in {out / 'skipped.txt'}",
              flush=True)
