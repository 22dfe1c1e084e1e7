"""One writer per training folder: an exclusive lock on ``OUT/.run.lock`` for the life of a run.

A second run on the same ``--out`` would delete the first's in-flight temporary
files at start-up, overwrite its ``config.json`` and interleave its metrics, so
it is refused with a sentence naming the first run's process. The lock is the
operating system's (``flock``; ``msvcrt.locking`` on Windows), so it is released
when the process ends however it ends: a killed run never leaves a stale lock.
The ranks of one ``torchrun`` job are one run: rank 0, the one that writes,
holds the lock.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

from cascade_core import CascadeError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
    import msvcrt

LOCK_NAME = ".run.lock"


def _try_lock(fd: int) -> bool:
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        return True
    except OSError:
        return False


def writable_folder(out: Path) -> Path:
    """``out``, created if missing; a folder that cannot be created or written is one sentence."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CascadeError(f"cannot create the output folder {out} ({e.strerror})",
                           "a writable folder for --out", str(out)) from None
    if not out.is_dir() or not os.access(out, os.W_OK):
        raise CascadeError(f"the output folder {out} is not writable", "a writable folder for "
                           "--out", "read-only" if out.is_dir() else "a file")
    return out


@contextlib.contextmanager
def run_lock(out: Path, active: bool = True):
    """Hold the lock of ``out`` while the block runs (``active`` False: rank > 0, nothing)."""
    if not active:
        yield
        return
    path = writable_folder(Path(out)) / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not _try_lock(fd):
            os.lseek(fd, 0, os.SEEK_SET)
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            raise CascadeError(f"another training run is writing into {out} (process {holder}); "
                               "one run per folder", "a folder no other run uses, or wait for "
                               f"process {holder} to finish", f"process {holder}")
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)
