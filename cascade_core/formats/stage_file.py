"""The single-file stage format: safetensors weights plus a JSON description.

Metadata keys: ``cdm_stage`` (the StageConfig as JSON), ``cdm_format``
("cascade-stage"), ``cdm_dtype`` and ``cdm_version``. Nothing is ever
unpickled, so a stage file from a stranger can only fail to load, not run code.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..errors import CascadeError, CheckpointError
from ..models.config import StageConfig
from ..models.stage import Stage
from ..version import __version__
from .atomic import atomic_write

FORMAT_TAG = "cascade-stage"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def save_stage(stage: Stage, path, dtype: str | None = None,
               state_dict: dict | None = None) -> Path:
    """Write ``stage`` (or ``state_dict`` with its config, e.g. EMA weights) atomically."""
    dtype = dtype or _dtype_name(stage.dtype)
    if dtype not in DTYPES:
        raise CascadeError("unknown checkpoint dtype", f"one of {sorted(DTYPES)}", repr(dtype))
    sd = state_dict if state_dict is not None else stage.state_dict()
    tensors = {k: v.detach().to("cpu", DTYPES[dtype]).contiguous() for k, v in sd.items()}
    meta = {"cdm_format": FORMAT_TAG, "cdm_stage": json.dumps(stage.config.to_dict()),
            "cdm_dtype": dtype, "cdm_version": __version__}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def read_config(path) -> tuple[StageConfig, dict]:
    """The StageConfig and raw metadata of a stage file, without loading the weights."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("stage file not found", "an existing .safetensors file", str(path))
    if path.suffix != ".safetensors":
        raise CheckpointError("stages load only from safetensors files", "*.safetensors", path.name)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(f"{path.name} is not a readable safetensors file ({e})") from None
    if meta.get("cdm_format") != FORMAT_TAG or "cdm_stage" not in meta:
        raise CheckpointError(f"{path.name} is not a cascade stage",
                              "metadata 'cdm_format': 'cascade-stage'",
                              sorted(meta) or "no metadata")
    try:
        cfg = StageConfig.from_dict(json.loads(meta["cdm_stage"]))
    except (json.JSONDecodeError, TypeError) as e:
        raise CheckpointError(f"{path.name} has unreadable stage metadata ({e})") from None
    except CascadeError as e:
        written_by = meta.get("cdm_version", "?")
        newer = ("" if written_by == __version__
                 else f" (written by pack version {written_by}; this is {__version__})")
        raise CheckpointError(f"{path.name} has invalid stage metadata{newer}: {e}") from None
    return cfg, meta


def load_stage(path, device="cpu", dtype: str | torch.dtype | None = "fp32") -> Stage:
    """Build the stage a file describes and load its weights, as float32 by default (half-precision
    convolutions are very slow on CPUs; use autocast for low-precision inference) or, with
    ``dtype=None``, in the dtype the file was saved in."""
    cfg, meta = read_config(path)
    name = Path(path).name
    try:
        with safe_open(str(path), framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise CheckpointError(f"{name}: weights are corrupt ({e})") from None
    stage = Stage(cfg)
    expected = stage.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [f"{k} {tuple(tensors[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
             if k in tensors and tensors[k].shape != v.shape]
    if missing or unexpected or wrong:
        found = "; ".join(filter(None, [f"missing {missing[:3]}" if missing else "",
                                        f"unexpected {unexpected[:3]}" if unexpected else "",
                                        f"shape mismatch {wrong[:3]}" if wrong else ""]))
        raise CheckpointError(f"{name}: weights do not match the stage config", cfg.describe(),
                              found)
    broken = [k for k, v in tensors.items() if v.is_floating_point() and not v.isfinite().all()]
    if broken:
        raise CheckpointError(f"{name}: {len(broken)} weight tensor(s) hold NaN or infinite values",
                              "finite weights", ", ".join(broken[:3]))
    target = DTYPES.get(meta.get("cdm_dtype", "fp32"),
                        torch.float32) if dtype is None else _as_dtype(dtype)
    stage = stage.to(target)
    stage.load_state_dict(tensors)
    return stage.to(device).eval()


def _as_dtype(dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise CascadeError("unknown dtype", f"one of {sorted(DTYPES)}", repr(dtype))
    return DTYPES[dtype]


def _dtype_name(dtype: torch.dtype) -> str:
    return {v: k for k, v in DTYPES.items()}[dtype]
