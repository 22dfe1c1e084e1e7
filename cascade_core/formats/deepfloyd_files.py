"""Finding and reading DeepFloyd IF's stage files as they are downloaded.

* **diffusers layout** (the DeepFloyd/IF-* repositories): a folder with
  ``unet/config.json`` beside ``unet/diffusion_pytorch_model.safetensors``, or its
  ``.fp16.safetensors`` variant, or shards listed by
  ``diffusion_pytorch_model.safetensors.index.json`` (``.index.fp16.json``);
* **original release**: ``config.yml`` (the ``params`` of deep-floyd/IF's
  ``UNetModel``) beside ``pytorch_model.bin``, read with ``weights_only=True``.

A user may point at the folder, the ``unet`` folder, the config or a weights
file of either; ``find`` says which layout it is. The stage's name is the
release folder's (``IF-I-XL-v1.0``).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors import safe_open

from ..base.errors import CheckpointError
from .torch_file import read_state_dict

WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors",
           "diffusion_pytorch_model.safetensors.index.json",
           "diffusion_pytorch_model.safetensors.index.fp16.json")
UNET_CLASS = "UNet2DConditionModel"


def _is_diffusers_unet(folder: Path) -> bool:
    config = folder / "config.json"
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("_class_name") == UNET_CLASS
    except (OSError, ValueError):
        return False


def find(path) -> tuple[str, Path] | None:
    """("diffusers", the unet folder) or ("release", the folder of config.yml) for a path into
    an IF download, or None when it is not one."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    for candidate in (folder, folder / "unet"):
        if _is_diffusers_unet(candidate):
            return "diffusers", candidate
    if (folder / "config.yml").is_file() and (path.is_dir() or path.suffix in (".bin", ".yml",
                                                                                 ".pt", ".pth")):
        return "release", folder
    return None


def release_name(folder: Path) -> str:
    """``IF-I-XL-v1.0`` for ``.../IF-I-XL-v1.0/unet`` or ``.../IF-I-XL-v1.0``."""
    folder = folder.resolve()
    return folder.parent.name if folder.name == "unet" else folder.name


def read_diffusers(folder: Path, chosen: Path | None = None) -> tuple[dict, dict]:
    """(config, tensors) of a diffusers unet folder: the weights file ``chosen`` if it is one,
    else the first of ``WEIGHTS`` present."""
    config = json.loads((folder / "config.json").read_text())
    names = [chosen.name] if chosen is not None and chosen.name in WEIGHTS else list(WEIGHTS)
    weights = next((folder / n for n in names if (folder / n).is_file()), None)
    if weights is None:
        raise CheckpointError(f"{release_name(folder)}: no weights beside unet/config.json",
                              f"one of {list(WEIGHTS)}", sorted(p.name for p in folder.iterdir()))
    if weights.name.endswith(".json"):
        return config, read_shards(weights)
    return config, read_safetensors(weights)


def read_safetensors(path: Path) -> dict:
    """Every tensor of a safetensors file (a clear error for a corrupt one)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"{path.name} is not a readable safetensors file ({e})") from None


def read_shards(index: Path) -> dict:
    """Every tensor of a sharded download, through its ``*.index.json`` (missing shards and
    tensors are named)."""
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (OSError, ValueError, KeyError) as e:
        raise CheckpointError(f"{index.name} is not a shard index", "a JSON object with a "
                              "'weight_map'", type(e).__name__) from None
    tensors = {}
    for shard in sorted(set(weight_map.values())):
        path = index.parent / shard
        if not path.is_file():
            raise CheckpointError(f"{index.parent.name}/{shard}: a shard listed by {index.name} "
                                  "is missing", "every shard of the download", "not found")
        tensors.update(read_safetensors(path))
    missing = sorted(set(weight_map) - set(tensors))
    if missing:
        raise CheckpointError(f"{index.name}: tensors listed in the index are not in their shard",
                              "every listed tensor", missing[:3])
    return tensors


def read_params(path: Path) -> dict:
    """The ``params`` mapping of an IF release ``config.yml``: ``key: value`` lines of numbers,
    booleans, strings and flow lists (``[2, 2, 3]``) under ``params:``; anything else is an error
    naming the line."""
    params, inside = {}, False
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        if line == "params:":
            inside = True
            continue
        m = re.match(r"^\s+([A-Za-z_][\w]*):\s*(.*)$", line)
        if not inside or m is None:
            raise CheckpointError(f"{path.name} line {number} is not a 'key: value' under "
                                  "'params:'", "IF's config.yml layout", raw.strip())
        params[m[1]] = _scalar(m[2].strip(), path, number)
    if not params:
        raise CheckpointError(f"{path.name} has no params", "a 'params:' mapping", "none")
    return params


def _scalar(text: str, path: Path, number: int):
    if text.startswith("[") and text.endswith("]"):
        return [_scalar(v.strip(), path, number) for v in text[1:-1].split(",") if v.strip()]
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("null", "~", ""):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    if re.match(r"^[\w.,-]+$", text):
        return text
    raise CheckpointError(f"{path.name} line {number}: a value this reader does not understand",
                          "a number, boolean, string or [list]", text)


def read_release(folder: Path) -> tuple[dict, dict]:
    """(params, tensors) of an IF release folder (``config.yml``, ``pytorch_model.bin``)."""
    weights = folder / "pytorch_model.bin"
    if not weights.is_file():
        raise CheckpointError(f"{release_name(folder)}: no pytorch_model.bin beside config.yml",
                              "the release's weights file", "not found")
    return read_params(folder / "config.yml"), read_state_dict(weights)


def to_dtype(tensors: dict, dtype: torch.dtype | None) -> dict:
    """Floating tensors in ``dtype`` (None: as stored), one at a time (a 4.3B-parameter stage
    must not exist twice in float32)."""
    if dtype is None:
        return tensors
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
