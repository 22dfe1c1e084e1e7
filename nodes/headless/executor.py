"""Run an API-format prompt or a UI-format workflow file with the pack's nodes and a RunContext."""
from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .. import NODE_CLASS_MAPPINGS
from .. import comfy_bridge as bridge
from .._core import core
from .context import RunContext
from .graph import WorkflowError, check_shape, execution_order, set_widget, to_prompt
from .io_nodes import BUILTIN, ContextNode
from .validate import validate

CLASSES = {**BUILTIN, **NODE_CLASS_MAPPINGS}


def _node(cls, context: RunContext):
    return cls(context) if issubclass(cls, ContextNode) else cls()


def _resolve(value, results: dict):
    is_link = isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
    return results[value[0]][value[1]] if is_link else value


def hidden_inputs(cls, nid: str, context: RunContext) -> dict:
    """What ComfyUI hands a node's hidden inputs: its id, and the dict of extra PNG text that
    SaveImage writes (shared by every node of the run, so a node can add to it)."""
    given = {"UNIQUE_ID": nid, "EXTRA_PNGINFO": context.extra_pnginfo}
    hidden = cls.INPUT_TYPES().get("hidden", {})
    return {name: given[source] for name, source in hidden.items() if source in given}


def last_uses(prompt: dict, order: list) -> dict:
    """node id -> the last node (in ``order``) that reads one of its outputs."""
    position = {nid: i for i, nid in enumerate(order)}
    last = {}
    for nid, node in prompt.items():
        for value in node["inputs"].values():
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                src = value[0]
                if src not in last or position[nid] > position[last[src]]:
                    last[src] = nid
    return last


def execute(prompt: dict, context: RunContext, verbose: bool = False) -> dict:
    """Run every node of an API-format prompt in dependency order; returns the outputs of the
    nodes nothing reads (each other node's outputs are dropped once its last reader has run, so
    a text encoder or a stage is not held in memory past its use)."""
    results = {}
    order = execution_order(prompt)
    drop_after = {}
    for src, reader in last_uses(prompt, order).items():
        drop_after.setdefault(reader, []).append(src)
    for nid in order:
        node = prompt[nid]
        cls = CLASSES[node["class_type"]]
        args = {k: _resolve(v, results) for k, v in node["inputs"].items()}
        args.update(hidden_inputs(cls, nid, context))
        t0 = time.time()
        label = f"node {nid} ({node['_meta']['title']})"
        try:
            out = getattr(_node(cls, context), cls.FUNCTION)(**args)
        except (core.SamplingInterrupted, WorkflowError):
            raise
        except core.CascadeError as e:  # name the node in front of the engine's sentence
            raise WorkflowError(f"{label}: {e}") from e
        except Exception as e:  # name the node, keep the cause
            raise WorkflowError(f"{label} failed: {type(e).__name__}: {e}") from e
        if isinstance(out, dict):
            out = out.get("result", ())
        results[nid] = tuple(out) if out is not None else ()
        for src in drop_after.get(nid, ()):
            del results[src]
        if verbose:
            print(f"  node {nid:>3} {node['_meta']['title']:<22} {time.time() - t0:6.2f}s",
                  flush=True)
    return results


MAX_WORKFLOW_BYTES = 64 * 2 ** 20  # ComfyUI's own workflows are kilobytes; a big one is not one


def read_workflow(path) -> dict:
    """The JSON of a workflow file, or one sentence saying why it is not one."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_WORKFLOW_BYTES:
            raise WorkflowError(f"workflow {path} is too large", "a JSON file under 64 MiB",
                                f"{size / 2 ** 20:.0f} MiB")
        return json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise WorkflowError(f"workflow {path} is not text", "a UTF-8 JSON file",
                            "binary data") from None
    except RecursionError:
        raise WorkflowError(f"workflow {path} nests too deeply", "a UI-format workflow",
                            "JSON nested thousands of levels") from None
    except (OSError, ValueError) as e:
        raise WorkflowError(f"cannot read workflow {path} ({e})") from None


def run(workflow_path, out_dir, overrides=(), stage_dirs=(), input_dirs=(),
        verbose=False) -> list[Path]:
    """Run a UI-format workflow file; ``overrides`` are ``[NODE.]widget=value`` strings. Returns the
    paths of the images it saved."""
    workflow = read_workflow(workflow_path)
    workflow_path = Path(workflow_path)
    for d in stage_dirs:
        bridge.add_stage_dir(d)
    workflow = copy.deepcopy(workflow)
    check_shape(workflow)
    for item in overrides:
        target, sep, value = item.partition("=")
        if not sep:
            raise WorkflowError("bad --set", "NODE.widget=value or widget=value", item)
        set_widget(workflow, CLASSES, target.strip(), value=value.strip())
    prompt = to_prompt(workflow, CLASSES)
    validate(prompt, CLASSES)  # every problem, before any node runs
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise WorkflowError("--out is a file, not a folder", "a folder for the images", str(out))
    context = RunContext(out_dir, [*input_dirs, workflow_path.parent, Path.cwd()], prompt,
                         workflow=workflow)
    execute(prompt, context, verbose)
    return list(context.saved)


def check_grid(grid_path, cols: int) -> Path:
    """Refuse a grid that cannot be written before any image is sampled."""
    grid_path = Path(grid_path)
    if not 1 <= cols <= 1024:
        raise WorkflowError("--grid-cols is out of range", "1 to 1024 images per row", cols)
    if grid_path.suffix.lower() != ".png":
        raise WorkflowError("--grid must name a PNG file", "a path ending in .png",
                            str(grid_path))
    try:
        core.formats.atomic.check_target(grid_path, overwrite=True)
    except core.CascadeError as e:
        raise WorkflowError(f"--grid: {e}") from None
    return grid_path


def write_grid(paths: list[Path], grid_path: Path, cols: int):
    """Assemble the PNGs at ``paths`` into one grid image, ``cols`` per row, atomically. Images
    of different sizes are brought to the largest with nearest-neighbour resizing."""
    images = [core.from_uint8(np.array(Image.open(p).convert("RGB"))) for p in paths]
    side = max(max(im.shape[-2:]) for im in images)
    images = [im if im.shape[-2:] == (side, side) else torch.nn.functional.interpolate(
        im[None], size=(side, side), mode="nearest")[0] for im in images]
    rows = [torch.stack(images[i:i + cols]) for i in range(0, len(images), cols)]
    grid = Image.fromarray(core.to_uint8(core.image_grid(rows)))
    core.formats.atomic.atomic_write(grid_path, lambda tmp: grid.save(tmp, format="PNG"))
