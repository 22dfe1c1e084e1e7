"""Numbered PNGs named as ComfyUI's SaveImage names them, never overwriting and never half-written.

``PREFIX_00001_.png``, ``PREFIX_00002_.png``, ...: the next number follows the
highest one present for that exact prefix (not a count of files, and not a
glob, so deleted files and brackets in a prefix change nothing). Each image is
encoded in memory, written to a temporary file in the target folder and linked
into place under its name: linking fails when the name exists (then the next
number is taken), so an existing file is never opened for writing, and an
interrupted or failed write (a full disk) leaves no partial PNG.
"""
from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import tempfile
from pathlib import Path

from .._core import core
from ..paths import escapes, inside

MAX_NAME = 200  # characters of the file name a prefix makes (file systems allow about 255)


def prefix_problem(prefix: str) -> str | None:
    """Why ``prefix`` cannot name output files (None when it can): it must stay inside the
    output folder, name a file and not only a folder, and hold no control characters."""
    why = escapes(prefix)
    if why is not None:
        return f"filename_prefix must stay inside the output folder, not {why}"
    if any(ord(c) < 32 for c in prefix):
        return "filename_prefix holds a control character (NUL, newline, ...)"
    normal = os.path.normpath(prefix)
    if normal in (".", "") or prefix.endswith(("/", os.sep)):
        return f"filename_prefix {prefix!r} names a folder, not a file"
    if len(os.path.basename(normal)) + len("_00000_.png") > MAX_NAME:
        return f"filename_prefix is too long: a file name of at most {MAX_NAME} characters"
    return None


def target(folder: Path, prefix: str) -> tuple[Path, str]:
    """(directory, name) of the files ``prefix`` makes inside ``folder``; the final file's path
    is checked to stay inside, after joining."""
    problem = prefix_problem(prefix)
    normal = os.path.normpath(prefix)
    if problem is None and inside(folder, f"{normal}_00001_.png") is None:
        problem = f"filename_prefix leaves the output folder ({prefix!r})"
    if problem is not None:
        raise core.CascadeError(f"SaveImage: {problem}", f"a name inside {folder}", prefix)
    path = Path(folder) / normal
    return path.parent, path.name


def next_number(directory: Path, name: str) -> int:
    """One more than the highest ``name_NNNNN_.png`` number present (1 when there is none)."""
    pattern = re.compile(rf"^{re.escape(name)}_(\d+)_\.png$")
    numbers = [int(m[1]) for p in directory.iterdir() if (m := pattern.match(p.name))] \
        if directory.is_dir() else []
    return max(numbers, default=0) + 1


def _place(tmp: str, path: Path, data: bytes):
    """Put the written ``tmp`` at ``path`` unless ``path`` exists (FileExistsError): a hard link,
    or where the file system has none, an exclusive create."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise
        with open(path, "xb") as f:
            f.write(data)


def save_png(image, directory: Path, *, name: str, pnginfo=None) -> Path:
    """Write the PIL ``image`` as the next free ``name_NNNNN_.png`` in ``directory``."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=pnginfo, compress_level=4)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".saving-", suffix=".png", dir=directory)
    except OSError as e:
        raise core.CascadeError(f"SaveImage: cannot write into {directory} ({e.strerror})") \
            from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buffer.getvalue())
        number = next_number(directory, name)
        while True:
            path = directory / f"{name}_{number:05}_.png"
            try:
                _place(tmp, path, buffer.getvalue())
                return path
            except FileExistsError:
                number += 1
    except OSError as e:
        raise core.CascadeError(f"SaveImage: could not write {name}_*.png in {directory} "
                                f"({e.strerror}); nothing partial was left") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
