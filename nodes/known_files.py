"""Stage files the pack knows by name, and where a person gets each one.

A missing file that is listed here gets its hint in the error (the headless
runner's validation, the Stage and Classifier Loaders, the workflows' notes):
the shipped CIFAR-10 stages, and every file of OpenAI's released ADM and
improved-diffusion checkpoints (``cascade_core.formats.adm_table``).
"""
from __future__ import annotations

from ._core import core

RELEASED = core.formats.adm_table.RELEASED

SHIPPED = ("ships with the pack in its weights/ folder: restore it with `git checkout weights/` "
           "in the pack's folder, or reinstall the pack")
KNOWN_FILES = {
    "cifar10-base16.safetensors": SHIPPED, "cifar10-sr16to32.safetensors": SHIPPED,
    "cifar10-refiner32.safetensors": SHIPPED,
}
for _entry in RELEASED:
    for _file in _entry.files:
        KNOWN_FILES[_file] = (f"is {_entry.what.split(' (')[0]}, released by OpenAI: download "
                              f"{_entry.url}{_file} into ComfyUI/models/cascade/ (it loads as it "
                              "is; `python -m cascade_core.formats.convert` makes a smaller fp16 "
                              ".safetensors)")


def download_url(name: str) -> str | None:
    """Where a released file is published, or None."""
    return next((e.url + name for e in RELEASED if name in e.files), None)


def missing_file_hint(name: str) -> str:
    """`` (hint)`` for a known stage file, else an empty string."""
    hint = KNOWN_FILES.get(str(name))
    return f" ({name} {hint})" if hint else ""
