"""What a file in the stage folders holds, so that each loader lists only what it can load.

Read cheaply and cached by path, size and modification time: a file of ours by
its safetensors metadata (the header only), a released ``.pt`` by its name in
OpenAI's table or else by its key names (``torch.load`` with ``mmap`` and
``weights_only``: the pickle is read, no tensor data), an IF download by its
config. ``"unknown"`` files (a legacy pickle of another name, a foreign
safetensors) are listed by the Stage Loader, whose error then says what they are.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import torch

from ._core import core

formats = core.formats
_kinds: dict[tuple, str] = {}
CLASSIFIER_KEY = "out.2.positional_embedding"  # only ADM's noisy classifiers have it


def _released_kind(name: str) -> str | None:
    entry = next((e for e in formats.adm_table.RELEASED if name in e.files), None)
    if entry is None:
        return None
    return "classifier" if entry.family == "classifier" else "stage"


def _pt_kind(path: Path) -> str:
    known = _released_kind(path.name)
    if known is not None:
        return known
    if not zipfile.is_zipfile(path):
        return "unknown"
    try:
        formats.zip_bounds.check_zip_bounds(path, "torch.save")
        keys = torch.load(path, map_location="cpu", weights_only=True, mmap=True).keys()
    except Exception:  # anything unreadable: the loader's error will say what it is
        return "unknown"
    return "classifier" if CLASSIFIER_KEY in keys else "stage"


def _read_kind(path: Path) -> str:
    if path.suffix in (".json", ".yml"):
        return "stage"
    if path.suffix in formats.torch_file.TORCH_SUFFIXES:
        return _pt_kind(path)
    try:
        tag = formats.stage_file.read_metadata(path).get("cdm_format")
    except core.CascadeError:
        return "unknown"
    return {formats.stage_file.FORMAT_TAG: "stage",
            formats.stage_file.CLASSIFIER_TAG: "classifier"}.get(tag, "unknown")


def file_kind(path) -> str:
    """``"stage"``, ``"classifier"`` or ``"unknown"`` for the file at ``path``."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        return "unknown"
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _kinds:
        _kinds[key] = _read_kind(path)
    return _kinds[key]


def lists(kind: str, path) -> bool:
    """Whether the loader of ``kind`` ("stage" or "classifier") lists the file at ``path``."""
    found = file_kind(path)
    return found == kind or (kind == "stage" and found == "unknown")
