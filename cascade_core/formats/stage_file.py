"""The single-file stage format: safetensors weights plus a JSON description.

Metadata keys: ``cdm_stage`` (the StageConfig as JSON), ``cdm_format``
("cascade-stage"), ``cdm_dtype`` and ``cdm_version``. Nothing is ever
unpickled, so a stage file from a stranger can only fail to load, not run code.
Noisy classifiers (classifier guidance) use the same layout with ``cdm_format``
"cascade-classifier" and ``cdm_classifier``.

``load_stage`` / ``load_classifier`` also take OpenAI's released ``.pt`` files
(read with ``torch.load(weights_only=True)``, described by ``formats.adm``).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..base.errors import CascadeError, CheckpointError
from ..base.memory import check_fits
from ..base.precision import DTYPES
from ..base.version import __version__
from ..models.budget import parameter_count
from ..models.noisy_classifier import NoisyClassifier
from ..models.stage import Stage
from . import stage_format
from .adm import load_adm
from .atomic import atomic_write
from .deepfloyd import is_deepfloyd, load_deepfloyd
from .torch_file import TORCH_SUFFIXES, read_state_dict
from .weight_check import check_finite_weights, mismatch

FORMAT_TAG = "cascade-stage"
CLASSIFIER_TAG = "cascade-classifier"


def save_stage(stage, path, dtype: str | None = None, state_dict: dict | None = None) -> Path:
    """Write ``stage`` (or ``state_dict`` with its config, e.g. EMA weights) atomically; a
    NoisyClassifier is written as a classifier file."""
    dtype = dtype or _dtype_name(stage.dtype)
    if dtype not in DTYPES:
        raise CascadeError("unknown checkpoint dtype", f"one of {sorted(DTYPES)}", repr(dtype))
    sd = state_dict if state_dict is not None else stage.state_dict()
    tensors = {k: v.detach().to("cpu", DTYPES[dtype]).contiguous() for k, v in sd.items()}
    config = json.dumps(stage_format.to_json(stage.config))
    meta = ({"cdm_format": CLASSIFIER_TAG, "cdm_classifier": config}
            if isinstance(stage, NoisyClassifier)
            else {"cdm_format": FORMAT_TAG, "cdm_stage": config})
    meta.update({"cdm_dtype": dtype, "cdm_version": __version__})
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def read_metadata(path) -> dict:
    """The metadata of a safetensors file (a clear error for anything else)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("stage file not found", "an existing .safetensors or .pt file",
                              str(path))
    if path.suffix != ".safetensors":
        raise CheckpointError("unknown checkpoint type", f"*.safetensors or *{TORCH_SUFFIXES}",
                              path.name)
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(f"{path.name} is not a readable safetensors file ({e})") from None


def read_config(path, expect: str = "stage"):
    """The config (StageConfig, or ClassifierConfig for ``expect="classifier"``) and raw metadata
    of a file of ours, of any format version, without loading the weights."""
    path = Path(path)
    meta = read_metadata(path)
    tag, key, build = ((FORMAT_TAG, "cdm_stage", stage_format.stage_config) if expect == "stage"
                       else (CLASSIFIER_TAG, "cdm_classifier", stage_format.classifier_config))
    if meta.get("cdm_format") != tag or key not in meta:
        raise CheckpointError(f"{path.name} is not a {_WHAT[tag]}",
                              f"metadata 'cdm_format': {tag!r}",
                              _WHAT.get(meta.get("cdm_format"), sorted(meta) or "no metadata"))
    try:
        cfg = build(json.loads(meta[key]))
    except (json.JSONDecodeError, TypeError) as e:
        raise CheckpointError(f"{path.name} has unreadable stage metadata ({e})") from None
    except CascadeError as e:
        written_by = meta.get("cdm_version", "?")
        newer = ("" if written_by == __version__
                 else f" (written by pack version {written_by}; this is {__version__})")
        raise CheckpointError(f"{path.name} has invalid stage metadata{newer}: {e}") from None
    return cfg, meta


_WHAT = {FORMAT_TAG: "cascade stage", CLASSIFIER_TAG: "noisy classifier (classifier guidance)"}


def load_released(path, expect: str | None, overrides: dict | None = None):
    """A released ``.pt`` file as a Stage or NoisyClassifier; with ``expect`` "stage" or
    "classifier", the other one is a clear error."""
    name = Path(path).name
    model = load_adm(read_state_dict(path), name, overrides)
    is_classifier = isinstance(model, NoisyClassifier)
    if expect is not None and is_classifier != (expect == "classifier"):
        found = "a noisy classifier" if is_classifier else f"a diffusion stage ({model.name})"
        raise CheckpointError(f"{name} is {found}", "a noisy classifier" if expect == "classifier"
                              else "a diffusion stage", found)
    return model


def load_stage(path, device="cpu", dtype: str | torch.dtype | None = "fp32",
               overrides: dict | None = None, role: str | None = None) -> Stage:
    """Build the stage a file describes and load its weights, as float32 by default (half-precision
    convolutions are very slow on CPUs; use autocast for low-precision inference) or, with
    ``dtype=None``, in the dtype the file was saved in. Released files load as downloaded: OpenAI's
    ``.pt`` through ``formats.adm`` (with ``overrides`` for its table values), DeepFloyd IF's
    folders through ``formats.deepfloyd``. ``role``: refuse a stage of another role, naming the
    file."""
    path = Path(path)
    if is_deepfloyd(path):
        stage = load_deepfloyd(path, _as_dtype(dtype) if dtype is not None else None).to(device)
    elif path.suffix in TORCH_SUFFIXES:
        stage = load_released(path, "stage", overrides)
        stage = stage.to(device, _as_dtype(dtype or "fp32")).eval()
    else:
        cfg, meta = read_config(path)
        params = parameter_count(cfg)
        width = _as_dtype(dtype).itemsize if dtype is not None else 4
        try:
            check_fits(f"{path.name}: a stage of {params / 1e6:,.0f}M parameters", params * width,
                       device=device)
        except CascadeError as e:
            raise CheckpointError(str(e)) from None
        with torch.device("meta"):  # no random init of weights about to be replaced (17 GB for
            empty = Stage(cfg)      # IF-I-XL in float32, beside its 8.6 GB of bf16 weights)
        stage = _load_weights(path, empty, meta=meta, dtype=dtype).to(device).eval()
    if role is not None and stage.config.role != role:
        raise CheckpointError(f"{stage.name} ({path.name}) is a {stage.config.describe()} stage",
                              f"a {role} stage", stage.config.role)
    return stage


def load_classifier(path, device="cpu", dtype: str | torch.dtype = "fp32",
                    overrides: dict | None = None) -> NoisyClassifier:
    """A noisy classifier from a released ``.pt`` or a converted classifier file of ours."""
    if Path(path).suffix in TORCH_SUFFIXES:
        model = load_released(path, "classifier", overrides)
    else:
        cfg, meta = read_config(path, expect="classifier")
        model = _load_weights(path, NoisyClassifier(cfg), meta=meta, dtype="fp32")
    return model.to(device, _as_dtype(dtype)).eval()


def _load_weights(path, stage, *, meta: dict, dtype):
    cfg = stage.config
    name = Path(path).name
    try:
        with safe_open(str(path), framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise CheckpointError(f"{name}: weights are corrupt ({e})") from None
    found = mismatch(tensors, stage.state_dict())
    if found:
        raise CheckpointError(f"{name}: weights do not match the stage config", cfg.describe(),
                              found)
    check_finite_weights(tensors, name)
    target = DTYPES.get(meta.get("cdm_dtype", "fp32"),
                        torch.float32) if dtype is None else _as_dtype(dtype)
    if next(stage.parameters()).is_meta:  # built empty: take the tensors as they are
        stage.load_state_dict({k: v.to(target) if v.is_floating_point() else v
                               for k, v in tensors.items()}, assign=True)
        return stage
    stage = stage.to(target)
    stage.load_state_dict(tensors)
    return stage


def _as_dtype(dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise CascadeError("unknown dtype", f"one of {sorted(DTYPES)}", repr(dtype))
    return DTYPES[dtype]


def _dtype_name(dtype: torch.dtype) -> str:
    return {v: k for k, v in DTYPES.items()}[dtype]
