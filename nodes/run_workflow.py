"""Run a shipped UI-format workflow headless, with the pack's nodes and without ComfyUI.

    python -m nodes.run_workflow workflows/01_base_then_sr.json --out output
    python -m nodes.run_workflow WORKFLOW --set seed=7 --set BaseSampler.steps=20 --grid grid.png

PNGs are written like ComfyUI's SaveImage writes them, with the prompt and
the workflow embedded, so dropping one into ComfyUI reopens its graph.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch

from . import NODE_CLASS_MAPPINGS
from . import builtin_nodes as io_nodes
from . import comfy_bridge as bridge
from ._core import core
from .workflow import WorkflowError, execution_order, set_widget, to_prompt

CLASSES = {**io_nodes.BUILTIN, **NODE_CLASS_MAPPINGS}


def execute(prompt: dict, verbose: bool = False) -> dict:
    """Run every node of an API-format prompt in dependency order; returns outputs by node id."""
    results = {}
    for nid in execution_order(prompt):
        node = prompt[nid]
        cls = CLASSES[node["class_type"]]
        args = {k: (results[v[0]][v[1]] if isinstance(v, list) and len(v) == 2 and isinstance(v[0], str) else v)
                for k, v in node["inputs"].items()}
        t0 = time.time()
        try:
            out = getattr(cls(), cls.FUNCTION)(**args)
        except (core.CascadeError, core.SamplingInterrupted):
            raise
        except Exception as e:  # name the node, keep the cause
            raise WorkflowError(f"node {nid} ({node['_meta']['title']}) failed: {type(e).__name__}: {e}") from e
        if isinstance(out, dict):
            out = out.get("result", ())
        results[nid] = tuple(out) if out is not None else ()
        if verbose:
            print(f"  node {nid:>3} {node['_meta']['title']:<22} {time.time() - t0:6.2f}s", flush=True)
    return results


def run(workflow_path, out_dir, overrides=(), stage_dirs=(), input_dirs=(), verbose=False) -> list[Path]:
    workflow_path = Path(workflow_path)
    try:
        workflow = json.loads(workflow_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise WorkflowError(f"cannot read workflow {workflow_path} ({e})") from None
    for d in stage_dirs:
        bridge.add_stage_dir(d)
    workflow = copy.deepcopy(workflow)
    for item in overrides:
        target, sep, value = item.partition("=")
        if not sep:
            raise WorkflowError("bad --set", "NODE.widget=value or widget=value", item)
        set_widget(workflow, CLASSES, target.strip(), value.strip())
    prompt = to_prompt(workflow, CLASSES)
    io_nodes.CONTEXT.__init__(out_dir, [*input_dirs, workflow_path.parent, Path.cwd()], prompt, workflow)
    execute(prompt, verbose)
    return list(io_nodes.CONTEXT.saved)


def write_grid(paths: list[Path], grid_path: Path, cols: int):
    from PIL import Image
    import numpy as np

    images = [torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1).float() / 127.5 - 1
              for p in paths]
    rows = [torch.stack(images[i:i + cols]) for i in range(0, len(images), cols)]
    grid = core.image_grid(rows)
    Image.fromarray(((grid + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()).save(grid_path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m nodes.run_workflow", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workflow", help="a UI-format workflow .json (e.g. from workflows/)")
    p.add_argument("--out", default="output", help="folder for the PNGs (default: output)")
    p.add_argument("--set", action="append", default=[], metavar="[NODE.]WIDGET=VALUE",
                   help="override a widget; NODE is a node id, type or title (repeatable)")
    p.add_argument("--stages", action="append", default=[], metavar="DIR",
                   help="extra folder of stage files, searched before the pack's weights/")
    p.add_argument("--input", action="append", default=[], metavar="DIR", help="folder LoadImage reads from")
    p.add_argument("--grid", default="", help="also write all saved images into one grid PNG here")
    p.add_argument("--grid-cols", type=int, default=8, help="images per grid row (default 8)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.time()
    try:
        saved = run(args.workflow, args.out, args.set, args.stages, args.input, verbose=True)
        if args.grid and saved:
            write_grid([s for s in saved if s.parent.name != "previews"], Path(args.grid), args.grid_cols)
    except core.SamplingInterrupted:
        print("interrupted", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except core.CascadeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {len(saved)} image(s) to {args.out} in {time.time() - t0:.1f}s"
          + (f" and the grid {args.grid}" if args.grid else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
