"""Reading a JPEG pack as something a stranger may have written.

Everything is checked before a byte is written: the archive's declared sizes,
each array's type and shape, offsets that rise from 0 to the end of their
bytes, header indices in range, and names that are relative, non-empty, free
of ``..``, NUL and backslashes, unique, and never both a file and a folder.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np

from cascade_core import CascadeError
from cascade_core.formats.zip_bounds import check_zip_bounds

MAX_FILES = 10_000_000
WRITER = "`python -m train.jpeg_pack pack`"


@dataclass
class Pack:
    names: list[str]
    header_index: np.ndarray
    headers: bytes
    header_offsets: np.ndarray
    bodies: bytes
    body_offsets: np.ndarray

    def file_bytes(self, i: int) -> bytes:
        h = int(self.header_index[i])
        return (self.headers[self.header_offsets[h]:self.header_offsets[h + 1]]
                + self.bodies[self.body_offsets[i]:self.body_offsets[i + 1]])


@dataclass
class _Fault:
    """Errors about one pack file."""

    pack_file: object

    def __call__(self, what, expected, found) -> CascadeError:
        return CascadeError(f"not a usable JPEG pack: {self.pack_file}: {what}", expected, found)

    def offsets(self, name, off, *, data_len: int, count: int):
        if off.ndim != 1 or off.dtype.kind not in "iu" or len(off) != count + 1:
            raise self(f"{name} has the wrong shape", f"{count + 1} integers",
                       f"{off.dtype} {tuple(off.shape)}")
        if off[0] != 0 or off[-1] != data_len or np.any(np.diff(off) < 0):
            raise self(f"{name} do not rise from 0 to the end of their bytes",
                       f"0 ... {data_len}, never falling", f"{off[0]} ... {off[-1]}")


def check_name(pack_file, name: str) -> PurePosixPath:
    """``name`` as a relative path that stays inside the destination, or a CascadeError."""
    p = PurePosixPath(name)
    if (not name or "\x00" in name or "\\" in name or p.is_absolute() or ".." in p.parts
            or name.endswith("/") or any(part in ("", ".") for part in name.split("/"))):
        raise CascadeError(f"a packed file name leaves the destination or is not a file name "
                           f"({pack_file})", "a relative path like class/0001.jpg", repr(name))
    return p


def _check_names(bad: _Fault, names: list[str]) -> None:
    paths = [check_name(bad.pack_file, n) for n in names]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise bad("a file name appears twice", "unique names", repr(dup))
    folders = {str(parent) for p in paths for parent in p.parents if str(parent) != "."}
    clash = sorted(folders & set(names))
    if clash:
        raise bad("a name is both a file and a folder", "files only in folders",
                   repr(clash[0]))


def read_pack(pack_file) -> Pack:
    """The checked contents of ``pack_file``; CascadeError naming the first fault otherwise."""
    check_zip_bounds(pack_file, WRITER)
    try:
        with np.load(pack_file, allow_pickle=False) as z:
            names, which = z["names"], z["header_index"]
            heads, hoff = z["headers"], z["header_offsets"]
            bodies, boff = z["bodies"], z["body_offsets"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise CascadeError(f"not a JPEG pack: {pack_file}", f"a file written by {WRITER}",
                           f"{type(e).__name__}: {str(e)[:160]}") from None
    bad = _Fault(pack_file)
    if names.ndim != 1 or names.dtype.kind != "U":
        raise bad("names are not a list of strings", "a 1-D array of str",
                   f"{names.dtype} {tuple(names.shape)}")
    count = len(names)
    if not 0 < count <= MAX_FILES:
        raise bad("the file count is out of range", f"1 to {MAX_FILES:,}", count)
    for name, arr in (("headers", heads), ("bodies", bodies)):
        if arr.ndim != 1 or arr.dtype != np.uint8:
            raise bad(f"{name} are not bytes", "a 1-D uint8 array",
                       f"{arr.dtype} {tuple(arr.shape)}")
    if which.ndim != 1 or which.dtype.kind not in "iu" or len(which) != count:
        raise bad("header_index has the wrong shape", f"{count} integers",
                   f"{which.dtype} {tuple(which.shape)}")
    num_headers = len(hoff) - 1
    bad.offsets("header_offsets", hoff, data_len=len(heads), count=max(num_headers, 0))
    bad.offsets("body_offsets", boff, data_len=len(bodies), count=count)
    if which.min() < 0 or which.max() >= num_headers:
        raise bad("a header index is out of range", f"0 to {num_headers - 1}",
                   int(which.max() if which.max() >= num_headers else which.min()))
    names = [str(n) for n in names]
    _check_names(bad, names)
    return Pack(names, which, heads.tobytes(), hoff, bodies.tobytes(), boff)
