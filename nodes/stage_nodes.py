"""Loading stages and showing what they are."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from . import comfy_bridge as bridge
from ._core import core
from .known_files import missing_file_hint

STAGE_TYPE = "CDM_STAGE"
_cache: dict = {}


@dataclass
class LoadedStage:
    """What flows along a CDM_STAGE link: the stage (kept on the offload device) and its file."""

    stage: core.Stage
    path: str

    @property
    def config(self):
        return self.stage.config

    @property
    def name(self) -> str:
        return Path(self.path).stem


def load(name: str) -> LoadedStage:
    path = bridge.stage_path(name)
    if path is None:
        raise core.CheckpointError(f"stage file {name!r} not found{missing_file_hint(name)}",
                                   f"one of {bridge.stage_files()} in the 'cascade' model folder",
                                   name)
    key = (str(path), path.stat().st_mtime_ns)
    if key not in _cache:
        _cache.clear()  # keep at most one generation of stages in memory
        stage = core.load_stage(path, device=bridge.offload_device(), dtype="fp32")
        _cache[key] = LoadedStage(stage, str(path))
    return _cache[key]


class CDMStageLoader:
    """Load one stage of a cascade (base, super-resolution or refiner) from a .safetensors file."""

    CATEGORY = "cascade"
    RETURN_TYPES = (STAGE_TYPE,)
    RETURN_NAMES = ("stage",)
    FUNCTION = "load"
    DESCRIPTION = "Loads a cascade stage from models/cascade or the pack's weights folder."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"stage_name": (bridge.stage_files(),
                                            {"tooltip": "a stage checkpoint"})}}

    def load(self, stage_name):
        return (load(stage_name),)


def describe(loaded: LoadedStage) -> str:
    cfg = loaded.config
    u, a, t = cfg.unet, cfg.augmentation, cfg.training
    classes = ", ".join(cfg.class_names) if cfg.class_names else cfg.num_classes or "unconditional"
    lines = [
        f"{loaded.name}: {cfg.describe()} ({loaded.stage.num_parameters() / 1e6:.2f}M parameters)",
        f"classes: {classes}", f"schedule: {cfg.schedule.kind}, T={cfg.schedule.timesteps}, "
        f"{cfg.parameterization}-prediction, "
        f"{'learned' if cfg.learn_sigma else 'fixed'} variance, {cfg.noise_conditioning} "
        "conditioning",
        f"U-Net: {u.base_channels} channels x {list(u.channel_mult)}, {u.num_res_blocks} "
        "blocks/level, "
        f"attention at {list(u.attention_resolutions) or 'none'}",
    ]
    if cfg.conditioned:
        lines.append(f"augmentation: s ~ U(0, {a.s_max}) on the {a.schedule} schedule, blur "
                     f"{a.blur_prob:.0%} "
                     f"with sigma {list(a.blur_sigma)}, default s {a.default_s}")
    if t:
        lines.append("training: " + json.dumps({k: v for k, v in t.items() if v not in ("", None)}))
    return "\n".join(lines)


class CDMStageInfo:
    """Show a stage's metadata: role, resolutions, classes, schedule, training data and steps."""

    CATEGORY = "cascade"
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("info",)
    FUNCTION = "info"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"stage": (STAGE_TYPE,)}}

    def info(self, stage):
        text = describe(stage)
        return {"ui": {"text": [text]}, "result": (text,)}
