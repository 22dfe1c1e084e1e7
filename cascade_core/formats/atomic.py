"""Atomic file writes: a crash or a full disk never leaves a half-written checkpoint."""
from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from ..base.errors import CascadeError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def os_error_reason(e: OSError) -> str:
    """An OSError as the few words a person acts on: a full disk, a read-only folder, ..."""
    if e.errno == errno.ENOSPC:
        return "the disk is full"
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "the folder is not writable"
    if e.errno in (errno.ENOTDIR, errno.EEXIST):
        return "a file stands where a folder is needed"
    return e.strerror or type(e).__name__


def check_target(path, *, overwrite: bool = False, sources: Iterable = ()) -> Path:
    """Refuse, before any work, an output that would overwrite an input, an existing file
    (unless ``overwrite``), a folder, or a place with a file where a folder should be."""
    path = Path(path)
    for src in sources:
        src = Path(src)
        if src.exists() and path.exists() and os.path.samefile(src, path):
            raise CascadeError(f"the output {path} is the input file", "a different output path",
                               str(src))
    if path.is_dir():
        raise CascadeError(f"the output {path} is a folder", "a file path", "a folder")
    if path.exists() and not overwrite:
        raise CascadeError(f"the output {path} already exists", "a new path, or --overwrite",
                           "an existing file")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise CascadeError(f"cannot write {path}", "a folder on the way",
                                   f"{parent} is a file")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise CascadeError(f"cannot write {path}", "a writable folder",
                                   f"{parent} is not writable")
            break
    return path


def atomic_write(path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it into place.

    An OSError (full disk, read-only folder) becomes one CascadeError sentence and leaves
    nothing behind."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise CascadeError(f"cannot write {path}", "a writable folder",
                           os_error_reason(e)) from None
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise CascadeError(f"cannot write {path}", "room and permission to write",
                           os_error_reason(e)) from None
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
