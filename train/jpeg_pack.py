"""Pack a JPEG image folder into one small file for a machine the folder cannot travel to.

    python -m train.jpeg_pack pack ../shared/data/cifar10/train runs/cifar10-train.npz
    python -m train.jpeg_pack unpack runs/cifar10-train.npz /tmp/cifar10/train

Why: a GPU machine reached through a size-capped transfer (64 MiB here) cannot
take the CIFAR-10 folder (46 MB of JPEG bytes, 197 MB on disk). Files written
by one encoder at one quality share their headers byte for byte (quantization
and Huffman tables: 623 of a CIFAR-10 file's ~880 bytes), so the pack stores
each distinct header once and every file's remaining bytes: the training split
packs into ~19 MB, and ``unpack`` rebuilds the folder bit-exactly (same class
folders, file names and bytes). Nothing is decoded or re-encoded.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from cascade_core import CascadeError
from cascade_core.formats.atomic import atomic_write, check_target, os_error_reason

from .jpeg_pack_read import read_pack

SOS = b"\xff\xda"  # start of scan: everything before its segment's end is header
JPEG_EXTS = {".jpg", ".jpeg"}


def split_header(data: bytes, name: str = "") -> int:
    """Length of a JPEG's header: its segments up to and including the start of scan, walked
    marker by marker (a table's bytes may hold FF DA too). Header plus the rest is always the
    whole file, so the pack is exact whatever the split; the split only decides the sharing."""
    if data[:2] != b"\xff\xd8":
        raise CascadeError(f"not a JPEG file: {name}", "bytes starting FF D8", data[:2].hex())
    i = 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker, length = data[i + 1], int.from_bytes(data[i + 2:i + 4], "big")
        i += 2 + length
        if marker == SOS[1]:
            return min(i, len(data))
    raise CascadeError(f"JPEG without a start-of-scan segment: {name}",
                       "segments up to an FF DA marker", f"none found before byte {i}")


def list_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in JPEG_EXTS)
    if not files:
        raise CascadeError(f"no JPEG files under {folder}", ".jpg or .jpeg files", 0)
    return files


def pack(folder, out) -> dict:
    """Write ``out`` (.npz) holding every JPEG under ``folder``, atomically; returns a
    summary."""
    folder, out = Path(folder), Path(out)
    files = list_files(folder)
    headers: dict[bytes, int] = {}
    which, bodies = [], []
    for f in files:
        data = f.read_bytes()
        n = split_header(data, str(f))
        which.append(headers.setdefault(data[:n], len(headers)))
        bodies.append(data[n:])
    lengths = np.array([len(b) for b in bodies], np.int64)
    arrays = {
        "names": np.array([str(f.relative_to(folder).as_posix()) for f in files]),
        "header_index": np.array(which, np.int32),
        "body_offsets": np.concatenate([[0], np.cumsum(lengths)]),
        "bodies": np.frombuffer(b"".join(bodies), np.uint8),
    }
    head_bytes = list(headers)  # in index order: dicts keep insertion order
    arrays["headers"] = np.frombuffer(b"".join(head_bytes), np.uint8)
    arrays["header_offsets"] = np.concatenate([[0], np.cumsum([len(h) for h in head_bytes])])
    check_target(out, overwrite=True)

    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(out, write)
    return {"files": len(files), "headers": len(headers), "bytes": out.stat().st_size,
            "source_bytes": int(lengths.sum() + sum(len(head_bytes[i]) for i in which))}


def unpack(pack_file, dest) -> int:
    """Rebuild the folder ``dest`` (new, or empty); returns the number of files written.

    The pack is checked whole first (jpeg_pack_read), then written into a temporary folder
    beside ``dest`` and renamed into place: a full disk or an interrupt leaves no half folder."""
    pack_data = read_pack(pack_file)
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise CascadeError(f"cannot unpack into {dest}", "a new or empty folder",
                           "a file" if not dest.is_dir() else "a folder that holds files")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    except OSError as e:
        raise CascadeError(f"cannot unpack into {dest}", "a writable folder",
                           os_error_reason(e)) from None
    try:
        for i, name in enumerate(pack_data.names):
            target = tmp / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(pack_data.file_bytes(i))
        if dest.exists():
            dest.rmdir()
        os.replace(tmp, dest)
    except OSError as e:
        raise CascadeError(f"cannot unpack into {dest}", "room and permission to write",
                           os_error_reason(e)) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return len(pack_data.names)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.jpeg_pack", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("pack", help="folder -> one .npz")
    a.add_argument("folder")
    a.add_argument("out")
    b = sub.add_parser("unpack", help="one .npz -> folder")
    b.add_argument("pack")
    b.add_argument("dest")
    args = p.parse_args(argv)
    try:
        if args.command == "pack":
            s = pack(args.folder, args.out)
            print(f"{s['files']} files, {s['headers']} distinct header(s): "
                  f"{s['source_bytes'] / 1e6:.1f} MB -> {s['bytes'] / 1e6:.1f} MB ({args.out})")
        else:
            print(f"{unpack(args.pack, args.dest)} files written under {args.dest}")
    except CascadeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
