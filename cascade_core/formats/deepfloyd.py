"""DeepFloyd IF's stages as they are downloaded, in either released layout, as stages of ours.

``load_deepfloyd`` finds the layout (``deepfloyd_files``), reads the file's own
config into a StageConfig of the one U-Net (``deepfloyd_config``), renames the
weights onto it (``deepfloyd_keys``) and loads them. The network is built on the
meta device and the weights are assigned in the requested precision, so a
4.3B-parameter stage never exists twice in memory.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..base.errors import CheckpointError
from ..models.stage import Stage
from . import deepfloyd_config, deepfloyd_files, deepfloyd_keys
from .adm import fit_shapes
from .weight_check import check_finite_weights


def is_deepfloyd(path) -> bool:
    """True for a path into an IF download (either layout)."""
    return deepfloyd_files.find(path) is not None


def read_deepfloyd(path):
    """(StageConfig, our state dict) of an IF download, weights as stored."""
    found = deepfloyd_files.find(path)
    if found is None:
        raise CheckpointError(f"{Path(path).name} is not a DeepFloyd IF stage",
                              "a diffusers unet folder (config.json + weights) or a release "
                              "folder (config.yml + pytorch_model.bin)", str(path))
    layout, folder = found
    name = deepfloyd_files.release_name(folder)
    chosen = Path(path) if Path(path).is_file() else None
    if layout == "diffusers":
        config, tensors = deepfloyd_files.read_diffusers(folder, chosen)
        cfg = deepfloyd_config.from_diffusers(config, name)
        return cfg, deepfloyd_keys.from_diffusers(tensors, cfg)
    params, tensors = deepfloyd_files.read_release(folder)
    cfg = deepfloyd_config.from_release(params, name)
    return cfg, deepfloyd_keys.from_release(tensors)


def load_deepfloyd(path, dtype: torch.dtype = torch.float32) -> Stage:
    """A Stage in ``dtype`` holding an IF download's weights."""
    cfg, state = read_deepfloyd(path)
    name = cfg.training["name"]
    with torch.device("meta"):
        stage = Stage(cfg)
    expected = stage.state_dict()
    try:
        fitted = fit_shapes({f"net.{k}": v for k, v in state.items()}, expected, name)
    except CheckpointError as e:
        raise CheckpointError(f"{name}: the weights do not match the file's own config "
                              f"({e})") from None
    check_finite_weights(fitted, name)
    stage.load_state_dict(deepfloyd_files.to_dtype(fitted, dtype), assign=True)
    return stage.eval()
