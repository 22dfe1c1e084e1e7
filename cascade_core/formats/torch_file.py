"""Reading a released PyTorch ``.pt`` / ``.pth`` state dict safely.

``torch.load(weights_only=True)`` unpickles only tensors and plain containers,
so a file from a stranger can fail to load but cannot run code. What it holds
must then be a flat mapping from names to tensors: anything else (a pickled
model, a training state of this pack, nested objects) is refused with a
sentence that says what the file is.
"""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from ..base.errors import CheckpointError
from .zip_bounds import check_zip_bounds

TORCH_SUFFIXES = (".pt", ".pth")
# the keys a training state of this pack starts with (train/state.py)
OUR_STATE_KEYS = {"step", "config", "rng_cpu"}


def read_state_dict(path) -> dict[str, torch.Tensor]:
    """The name -> tensor mapping of a ``.pt`` file, on the CPU; CheckpointError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("checkpoint not found", "an existing .pt file", str(path))
    if zipfile.is_zipfile(path):
        check_zip_bounds(path, "torch.save", CheckpointError)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=False)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else ""
        raise CheckpointError(f"{path.name} holds objects that a safe load refuses; only state "
                              f"dicts of tensors are read ({first})") from None
    except Exception as e:  # zip/EOF/pickle framing errors of a cut or corrupt file
        raise CheckpointError(f"{path.name} is truncated or not a PyTorch checkpoint "
                              f"({type(e).__name__}: {str(e)[:160]})") from None
    if isinstance(data, dict) and OUR_STATE_KEYS <= set(data):
        raise CheckpointError(f"{path.name} is a training state of this pack (model, EMA, "
                              "optimizer and RNG states), not a stage: load the "
                              "stage-*.safetensors or latest.safetensors written beside it, or "
                              "continue training with --resume")
    if not isinstance(data, dict):
        raise CheckpointError(f"{path.name} does not hold a state dict",
                              "a mapping from parameter names to tensors", type(data).__name__)
    bad = [k for k, v in data.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))]
    if bad:
        found = ", ".join(f"{k!r}: {type(data[k]).__name__}" for k in bad[:3])
        raise CheckpointError(f"{path.name} holds more than tensors",
                              "a mapping from parameter names to tensors", found)
    return data
