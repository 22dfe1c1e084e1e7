"""Paths taken from a workflow stay inside their folder, as ComfyUI's ``folder_paths`` keeps them.

The check is lexical (the joined, normalised path must lie under the folder),
not ``realpath``: symlinked model and output folders are common and stay
allowed, and so do subfolders inside the folder.
"""
from __future__ import annotations

import os
from pathlib import Path


def escapes(name: str) -> str | None:
    """Why ``name`` cannot be a path inside some folder (absolute, or climbing out), else None."""
    text = str(name)
    if not text.strip():
        return "an empty name"
    if os.path.isabs(text) or text.startswith("~") or Path(text).drive:
        return f"an absolute path ({text!r})"
    normal = os.path.normpath(text)
    if normal == os.pardir or normal.startswith(os.pardir + os.sep):
        return f"a path that leaves its folder ({text!r})"
    return None


def inside(folder, name: str) -> Path | None:
    """``folder / name`` when it stays inside ``folder`` (lexically), else None."""
    if escapes(name):
        return None
    base = os.path.abspath(folder)
    full = os.path.normpath(os.path.join(base, name))
    return Path(full) if os.path.commonpath([base, full]) == base else None
