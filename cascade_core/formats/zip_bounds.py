"""Refusing a zip archive that declares more than its file could hold, before inflating it.

``torch.save`` and ``numpy.savez`` both store their entries uncompressed, so a
compressed entry, or contents larger than the file, is a zip bomb or a file
written by something else.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

from ..base.errors import CascadeError


def check_zip_bounds(path, writer: str, error: type[CascadeError] = CascadeError) -> None:
    """Raise ``error`` when ``path`` (a zip) is cut, has compressed entries, or declares more
    bytes than it holds; ``writer`` names what writes such files, for the message."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as z:
            entries = z.infolist()
    except (zipfile.BadZipFile, OSError) as e:
        raise error(f"{path.name} is truncated or not a file written by {writer} "
                    f"({type(e).__name__})") from None
    size = path.stat().st_size
    declared = sum(i.file_size for i in entries)
    compressed = [i.filename for i in entries if i.compress_type != zipfile.ZIP_STORED]
    if compressed or declared > size + 2 ** 20:
        raise error(f"{path.name} declares {declared / 2 ** 30:.2f} GiB of contents in a "
                    f"{size / 2 ** 20:.1f} MiB file (compressed entries: {writer} never writes "
                    "them)", "contents that fit the file", compressed[:2] or
                    f"{declared:,} bytes declared")
