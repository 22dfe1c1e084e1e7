"""Loading stages and showing what they are."""
from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from . import comfy_bridge as bridge
from . import widgets as W
from ._core import core
from .known_files import missing_file_hint

STAGE_TYPE = W.STAGE_TYPE
CLASSIFIER_TYPE = "CDM_CLASSIFIER"
_cache: dict = {}
KEEP_EACH = 3  # stages (and, separately, classifiers) kept loaded, least recently used out
LOG = logging.getLogger(__name__)


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
        """The file's name, or for an IF download (offered by its config) the release's."""
        path = Path(self.path)
        return self.stage.name if path.suffix in (".json", ".yml") else path.stem


def say(message: str):
    """Compile times and fall-backs, to ComfyUI's console (its log shows INFO)."""
    (LOG.warning if message.startswith("warning") else LOG.info)(message)


NO_CLASSIFIER = ("there is no noisy classifier in the 'cascade' model folder: OpenAI's "
                 "released ones (64x64_classifier.pt, 128x128_, 256x256_, 512x512_) are at "
                 f"{core.formats.adm_table.GUIDED_URL}; put one into ComfyUI/models/cascade/")


def find(name: str, what: str = "stage") -> Path:
    """The path of a file in the stage folders; a clear error (with a download hint for files
    the pack knows, and where to get a classifier when there is none) when it is not there."""
    path = bridge.stage_path(name)
    if path is None:
        listed = bridge.stage_files(what)
        if what == "classifier" and not listed:
            raise core.CheckpointError(NO_CLASSIFIER)
        raise core.CheckpointError(f"{what} file {name!r} not found{missing_file_hint(name)}",
                                   f"one of {listed} in the 'cascade' model folder", name)
    return path


def load(name: str, what: str = "stage", compile: bool = False) -> LoadedStage:
    """A stage (or, with ``what="classifier"``, a noisy classifier); headless, cached by path and
    mtime (inside ComfyUI, never: see ``comfy_bridge.caches_stages``); ``compile``: evaluate
    it through torch.compile (a separate cache entry)."""
    path = find(name, what)
    if not bridge.caches_stages():
        # inside ComfyUI its own caches hold the loader's output, and its /free (unload
        # models, free memory) drops them: a cache of ours would keep the stage alive
        loaded = _read(path, what)
        if compile:
            core.compile_stage(loaded.stage, log=say)
        return loaded
    key = (what, str(path), path.stat().st_mtime_ns, bool(compile))
    if key in _cache:
        _cache[key] = _cache.pop(key)  # most recently used last
        return _cache[key]
    # keep the few most recently used of each: a cascade's stages stay loaded between runs
    # (evicting one stage per load reloaded every stage of a workflow on every run), while
    # switching among many large files does not pile them up in memory
    for old in [k for k in _cache if k[0] == what][:-(KEEP_EACH - 1) or None]:
        del _cache[old]
    _cache[key] = _read(path, what)
    if compile:
        core.compile_stage(_cache[key].stage, log=say)
    return _cache[key]


def _read(path: Path, what: str) -> LoadedStage:
    """Stages load as float32 (half-precision convolutions are slow on CPUs; sampling autocasts),
    except a stage file of ours stored in bf16, which stays bf16 (IF-I-XL: 8.6 GB instead of
    17) and samples natively in bf16."""
    loader = core.load_stage if what == "stage" else core.load_classifier
    dtype = "fp32"
    if what == "stage" and path.suffix == ".safetensors":
        with contextlib.suppress(core.CheckpointError):
            if core.formats.stage_file.read_metadata(path).get("cdm_dtype") == "bf16":
                dtype = None
    return LoadedStage(loader(path, device=bridge.offload_device(), dtype=dtype), str(path))


class CDMStageLoader:
    """Load one stage of a cascade (base, super-resolution or refiner): a .safetensors of this
    pack, or a released OpenAI ADM / improved-diffusion .pt as it is downloaded."""

    CATEGORY = W.CATEGORY
    RETURN_TYPES = (STAGE_TYPE,)
    RETURN_NAMES = ("stage",)
    OUTPUT_TOOLTIPS = ("the stage: connect it to a Base Sampler, Super-Resolution Stage, Refiner, "
                       "Sweep or Stage Info",)
    FUNCTION = "load"
    DESCRIPTION = ("Loads one stage of a pixel-space cascade (a base, super-resolution or "
                   "refiner stage) from models/cascade or the pack's weights folder: the pack's "
                   ".safetensors, OpenAI's released ADM / improved-diffusion .pt files, or a "
                   "DeepFloyd IF stage folder as downloaded. Only stage files are listed.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"stage_name": (bridge.stage_files("stage"),
                                            {"tooltip": "a stage file in models/cascade (or the "
                                                        "pack's weights/); noisy classifiers "
                                                        "are listed by the Classifier Loader"})},
                "optional": {"compile": ("BOOLEAN", {
                    "default": False,
                    "tooltip": "torch.compile the network: faster fp32 sampling after a "
                               "one-off compile of 30-60 s per image size (printed in the "
                               "console); falls back to eager with a warning if it fails"})}}

    def load(self, stage_name, compile=False):
        return (load(stage_name, compile=compile),)


class CDMClassifierLoader:
    """Load a noisy classifier for classifier guidance (ADM-G): a released ``*_classifier.pt``
    or its converted .safetensors."""

    CATEGORY = W.CATEGORY
    RETURN_TYPES = (CLASSIFIER_TYPE,)
    RETURN_NAMES = ("classifier",)
    OUTPUT_TOOLTIPS = ("the noisy classifier: connect it to a Base Sampler's classifier input",)
    FUNCTION = "load"
    DESCRIPTION = ("Loads a noisy classifier (OpenAI's 64/128/256/512 px ImageNet classifiers) "
                   "to guide a base stage of the same size and classes.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"classifier_name": (bridge.stage_files("classifier"),
                                                 {"tooltip": "a noisy classifier file in models/"
                                                            "cascade (only classifiers are "
                                                            "listed)"})}}

    def load(self, classifier_name):
        return (load(classifier_name, what="classifier"),)


def class_list(names) -> str:
    """Class names for Stage Info: inline when few, numbered when many (ImageNet's 1000)."""
    if len(names) <= 20:
        return ", ".join(names)
    return "\n" + "\n".join(f"  {i}: {n}" for i, n in enumerate(names))


def describe(loaded: LoadedStage) -> str:
    cfg = loaded.config
    u, a, t = cfg.unet, cfg.augmentation, cfg.training
    classes = class_list(cfg.class_names) if cfg.class_names else cfg.num_classes or "unconditional"
    lines = [
        f"{loaded.name}: {cfg.describe()} ({loaded.stage.num_parameters() / 1e6:.2f}M parameters)",
        f"classes: {classes}",
        f"schedule: {cfg.schedule.beta_schedule}, T={cfg.schedule.timesteps}, "
        f"{cfg.parameterization}-prediction, "
        f"{'learned' if cfg.learn_sigma else 'fixed'} variance, {cfg.noise_conditioning} "
        "conditioning",
        f"U-Net: {u.base_channels} channels x {list(u.channel_mult)}, {u.num_res_blocks} "
        "blocks/level, "
        f"attention at {list(u.attention_resolutions) or 'none'}",
    ]
    if cfg.text.width:
        lines.append(f"text: {cfg.text.encoder or 'encoder'} token embeddings, width "
                     f"{cfg.text.width}, up to {cfg.text.max_tokens} tokens")
    if cfg.sampling.fixed:
        made = cfg.training.get("distillation") or {}
        lines.append(f"sampling: distilled for {cfg.sampling.sampler} with {cfg.sampling.steps} "
                     f"steps, {cfg.sampling.spacing} spacing (steps 0 on a sampling node), from "
                     f"a {made.get('teacher_steps', '?')}-step teacher")
    if cfg.conditioned and not cfg.aug_input:
        lines.append("augmentation: none (trained on clean low-res images; takes s = 0 only)")
    elif cfg.conditioned:
        lines.append(f"augmentation: s ~ U(0, {a.s_max}) on the {a.schedule} schedule, blur "
                     f"{a.blur_prob:.0%} "
                     f"with sigma {list(a.blur_sigma)}, default s {a.default_s}")
    if t:
        lines += training_summary(t)
        lines += ["", "raw training record:", json.dumps(t, indent=1)]
    return "\n".join(lines)


def training_summary(record: dict) -> list[str]:
    """The training record as lines a person reads: one per run, newest first (a continued
    run's record nests the run it continued from under ``parent``)."""
    lines, run, depth = [], record, 0
    while isinstance(run, dict) and depth < 20:
        parts = []
        if run.get("steps"):
            parts.append(f"{run['steps']:,} steps")
        if run.get("batch_size"):
            parts.append(f"batch {run['batch_size']}")
        if run.get("lr"):
            parts.append(f"lr {run['lr']:g}")
        if run.get("device"):
            parts.append(f"on {run['device']}")
        if run.get("seconds"):
            parts.append(f"{run['seconds'] / 60:.0f} min")
        head = "trained" if depth == 0 else "  continued from"
        if run.get("source"):  # a released file: where it comes from
            parts.insert(0, str(run["source"]))
        lines.append(f"{head}: " + (", ".join(parts) or "(no details recorded)"))
        run, depth = run.get("parent"), depth + 1
    data = record.get("data")
    total = record.get("images_seen_total") or record.get("images_seen")
    if data or total:
        lines.append("data: " + ", ".join(filter(None, [
            str(data) if data else "", f"{total:,} images seen in all" if total else ""])))
    return lines


class CDMStageInfo:
    """Show a stage's metadata: role, resolutions, classes, schedule, training data and steps."""

    CATEGORY = W.CATEGORY
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("info",)
    OUTPUT_TOOLTIPS = ("the same summary as text",)
    FUNCTION = "info"
    OUTPUT_NODE = True
    DESCRIPTION = ("Shows what a stage is: its role and sizes, classes, noise schedule, network, "
                   "the conditioning augmentation it was trained with (and so which s it "
                   "expects), and how it was trained; the raw training record comes last.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"stage": W.stage("any stage")}}

    def info(self, stage):
        text = describe(stage)
        return {"ui": {"text": [text]}, "result": (text,)}
