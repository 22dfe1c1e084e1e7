"""Stage files the pack knows by name, and where a person gets each one.

A missing file that is listed here gets its hint in the error (the headless
runner's validation, the Stage Loader). The released-checkpoints work adds the
public pixel cascades (OpenAI's ADM files) to this table.
"""
from __future__ import annotations

SHIPPED = ("ships with the pack in its weights/ folder: restore it with `git checkout weights/` "
           "in the pack's folder, or reinstall the pack")
KNOWN_FILES = {
    "cifar10-base16.safetensors": SHIPPED, "cifar10-sr16to32.safetensors": SHIPPED,
    "cifar10-refiner32.safetensors": SHIPPED,
}


def missing_file_hint(name: str) -> str:
    """`` (hint)`` for a known stage file, else an empty string."""
    hint = KNOWN_FILES.get(str(name))
    return f" ({name} {hint})" if hint else ""
