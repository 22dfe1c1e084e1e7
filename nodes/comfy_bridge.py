"""ComfyUI's services when the pack runs inside ComfyUI, quiet stand-ins when it does not.

Devices and memory (``comfy.model_management``), progress bars with previews
(``comfy.utils.ProgressBar``), the queue's interrupt, and the model folders
(``folder_paths``). Outside ComfyUI the same node code runs: progress becomes
a no-op and interruption is driven by ``request_interrupt`` (used by tests and
the headless runner).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import threading
from pathlib import Path

import torch

try:  # these modules exist only inside a running ComfyUI
    import comfy.model_management as mm
    import comfy.model_patcher as model_patcher
    import comfy.utils as comfy_utils
    import folder_paths
except ImportError:
    mm = model_patcher = comfy_utils = folder_paths = None

from .paths import escapes, inside  # noqa: E402  (after the optional ComfyUI imports)

FOLDER = "cascade"
# our stage files, OpenAI's released ADM / improved-diffusion checkpoints (read tensors-only), and
# DeepFloyd IF downloads, offered by their unet/config.json (diffusers) or config.yml (release)
EXTENSIONS = (".safetensors", ".pt", ".pth", ".json", ".yml")
# sub-folders of a diffusers pipeline download whose files are not stages of their own
PIPELINE_PARTS = {"unet", "text_encoder", "tokenizer", "tokenizer_2", "safety_checker",
                  "feature_extractor", "scheduler", "watermarker"}
PACK_WEIGHTS = Path(__file__).resolve().parent.parent / "weights"
EXAMPLE_INPUTS = Path(__file__).resolve().parent.parent / "workflows"
_extra_dirs: list[Path] = []
_interrupt = threading.Event()


def register_model_folder():
    """Register ``models/cascade`` (created if absent, so a user sees where files go) and the
    pack's ``weights/`` as the ``cascade`` folder, and put the shipped workflows' example inputs
    into ComfyUI's input folder where they are missing (LoadImage reads only from there)."""
    if folder_paths is None:
        return
    paths = [os.path.join(folder_paths.models_dir, FOLDER), str(PACK_WEIGHTS)]
    with contextlib.suppress(OSError):  # a read-only install still runs
        os.makedirs(paths[0], exist_ok=True)
        copy_example_inputs(Path(folder_paths.get_input_directory()))
    entry = folder_paths.folder_names_and_paths.get(FOLDER)
    if entry is None:
        folder_paths.folder_names_and_paths[FOLDER] = (paths, set(EXTENSIONS))
    else:
        for p in paths:
            if p not in entry[0]:
                entry[0].append(p)
        entry[1].update(EXTENSIONS)


def copy_example_inputs(input_dir: Path) -> list[Path]:
    """Copy ``workflows/cdm_example_*.png`` into ``input_dir`` where absent; the copies made."""
    made = []
    for src in sorted(EXAMPLE_INPUTS.glob("cdm_example_*.png")):
        dst = input_dir / src.name
        if not dst.exists():
            input_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            made.append(dst)
    return made


def add_stage_dir(path):
    """Outside ComfyUI: one more folder to find stage files in (searched before the pack's)."""
    p = Path(path).resolve()
    if p not in _extra_dirs:
        _extra_dirs.insert(0, p)


def remove_stage_dir(path):
    """Undo ``add_stage_dir`` (a benchmark's temporary folder of stand-in stages)."""
    p = Path(path).resolve()
    if p in _extra_dirs:
        _extra_dirs.remove(p)


def stage_dirs() -> list[Path]:
    env = [Path(p) for p in os.environ.get("CDM_STAGE_DIRS", "").split(os.pathsep) if p]
    return [*_extra_dirs, *env, PACK_WEIGHTS]


def offered(name: str) -> bool:
    """Whether the Stage Loader lists ``name`` (a path relative to a stage folder): stage files,
    and an IF download once, by its ``unet/config.json`` or ``config.yml``, never the files
    inside a pipeline download (its text encoder's shards, say)."""
    path = Path(name)
    if path.name == "config.yml" or path.as_posix().endswith("unet/config.json"):
        return True
    if path.suffix not in EXTENSIONS or path.suffix in (".json", ".yml"):
        return False
    return not set(path.parts[:-1]) & PIPELINE_PARTS


def caches_stages() -> bool:
    """Whether the pack keeps its own cache of loaded stages: headless only. Inside ComfyUI its
    execution cache holds what a loader returned, and ComfyUI's /free empties it; a module
    cache of ours would keep those stages in memory past it."""
    return folder_paths is None


def stage_files(kind: str | None = None) -> list[str]:
    """The files the Stage Loader offers; with ``kind`` ("stage" or "classifier") only those
    that hold that kind (``file_kinds``)."""
    if folder_paths is not None:
        names = [n for n in folder_paths.get_filename_list(FOLDER) if offered(n)]
    else:
        names = sorted({f.relative_to(d).as_posix() for d in stage_dirs() if d.is_dir()
                        for f in d.rglob("*") if f.is_file()
                        and offered(f.relative_to(d).as_posix())})
    if kind is None:
        return names
    from .file_kinds import lists  # reads files: only when a loader asks
    return [n for n in names if (p := stage_path(n)) is not None and lists(kind, p)]


def stage_path(name: str) -> Path | None:
    """The file ``name`` inside one of the stage folders; None when it is not there or when the
    name would lead outside them (absolute, or climbing out with ``..``)."""
    if escapes(name):
        return None
    if folder_paths is not None:
        p = folder_paths.get_full_path(FOLDER, name)
        return Path(p) if p else None
    for d in stage_dirs():
        p = inside(d, name)
        if p is not None and p.is_file():
            return d / os.path.normpath(name)
    return None


def _comfy(name: str):
    """A ``comfy.model_management`` function, or None outside ComfyUI or where a release lacks
    it."""
    return getattr(mm, name, None) if mm is not None else None


def compute_device() -> torch.device:
    fn = _comfy("get_torch_device")
    if fn is not None:
        return fn()
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def offload_device() -> torch.device:
    fn = _comfy("unet_offload_device")
    return fn() if fn is not None else torch.device("cpu")


def intermediate_device() -> torch.device:
    fn = _comfy("intermediate_device")
    return fn() if fn is not None else torch.device("cpu")


class ComfyStage(torch.nn.Module):
    """What ComfyUI's model management holds for a stage: the stage as a submodule, plus the
    plain attributes ``ModelPatcher`` writes (``device``, ``model_lowvram``, ...), which a
    ``Stage`` cannot take (its ``device`` is a read-only property)."""

    def __init__(self, stage: torch.nn.Module):
        super().__init__()
        self.stage = stage
        self.device = next(stage.parameters()).device


def comfy_patcher(stage: torch.nn.Module):
    """The ``ModelPatcher`` that makes ``stage`` one of ComfyUI's loaded models, made once per
    stage and kept on it: it lives as long as the loader's output does in ComfyUI's cache, and
    model management holds it only weakly, so /free and the cache's eviction still drop it."""
    patcher = stage.__dict__.get("_comfy_patcher")
    if patcher is None:
        patcher = model_patcher.ModelPatcher(ComfyStage(stage), load_device=compute_device(),
                                             offload_device=offload_device())
        stage.__dict__["_comfy_patcher"] = patcher
    return patcher


@contextlib.contextmanager
def on_compute_device(stage: torch.nn.Module):
    """Put a stage on the compute device for one run. Inside ComfyUI the stage is one of its
    loaded models (``comfy_patcher``): ComfyUI loads it, frees room for it by offloading other
    models, keeps it loaded after the run and evicts it under memory pressure or on /free, as
    it does its own. Headless, the stage moves to the compute device for the run and back to
    the offload device after, so a cascade runs where one stage fits. ``None`` (an optional
    model that is not connected) moves nothing."""
    device = compute_device()
    if stage is None:
        yield device
        return
    if model_patcher is not None and _comfy("load_models_gpu") is not None:
        load_with_comfy(comfy_patcher(stage))
        yield device
        return
    stage.to(device)
    try:
        yield device
    finally:
        stage.to(offload_device())


def load_with_comfy(patcher):
    """``load_models_gpu`` with the whole stage on the device: our layers are plain torch ones,
    which ComfyUI's low-VRAM mode cannot stream; a release without ``force_full_load`` gets the
    plain call."""
    try:
        mm.load_models_gpu([patcher], force_full_load=True)
    except TypeError:
        mm.load_models_gpu([patcher])


def request_interrupt(flag: bool = True):
    """Ask running samplers to stop at their next step (outside ComfyUI's queue)."""
    if flag:
        _interrupt.set()
    else:
        _interrupt.clear()


def check_interrupt():
    fn = _comfy("throw_exception_if_processing_interrupted")
    if fn is not None:
        fn()  # raises ComfyUI's own interrupt exception, which its executor expects
    if _interrupt.is_set():
        _interrupt.clear()
        from ._core import core
        raise core.SamplingInterrupted("sampling interrupted")


class Progress:
    """Per-step progress with a preview of the current x0 estimate, and the interrupt check."""

    def __init__(self, total: int):
        self.total = total
        bar = getattr(comfy_utils, "ProgressBar", None) if comfy_utils is not None else None
        self.bar = bar(total) if bar is not None else None

    def __call__(self, info: dict):
        check_interrupt()
        if self.bar is None:
            return
        preview = None
        with contextlib.suppress(Exception):
            from .images import to_pil
            preview = ("JPEG", to_pil(info["denoised"][0]), 512)
        self.bar.update_absolute(info["i"] + 1, self.total, preview)
