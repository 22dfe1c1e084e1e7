"""Run a shipped UI-format workflow headless, with the pack's nodes and without ComfyUI.

    python -m nodes.run_workflow workflows/01_base_then_sr.json --out output
    python -m nodes.run_workflow WORKFLOW --set seed=7 --set BaseSampler.steps=20 --grid grid.png

PNGs are written like ComfyUI's SaveImage writes them, with the prompt and
the workflow embedded, so dropping one into ComfyUI reopens its graph.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import torch

from ._core import core
from .headless.executor import check_grid, run, write_grid


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m nodes.run_workflow", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workflow", help="a UI-format workflow .json (e.g. from workflows/)")
    p.add_argument("--out", default="output", help="folder for the PNGs (default: output)")
    p.add_argument("--set", action="append", default=[], metavar="[NODE.]WIDGET=VALUE",
                   help="override a widget; NODE is a node id, type or title (repeatable)")
    p.add_argument("--stages", action="append", default=[], metavar="DIR",
                   help="extra folder of stage files, searched before the pack's weights/")
    p.add_argument("--input", action="append", default=[], metavar="DIR",
                   help="folder LoadImage reads from")
    p.add_argument("--grid", default="", help="also write all saved images into one grid PNG here")
    p.add_argument("--grid-cols", type=int, default=8, help="images per grid row (default 8)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (default: torch's choice)")
    args = p.parse_args(argv)
    # the nodes report through logging as in ComfyUI (compile times, warnings): show them
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    t0 = time.time()
    try:
        if not 0 <= args.threads <= 1024:
            raise core.CascadeError("--threads is out of range", "0 (torch's choice) to 1024",
                                    args.threads)
        if args.threads:
            torch.set_num_threads(args.threads)
        if args.grid:
            check_grid(args.grid, args.grid_cols)
        saved = run(args.workflow, args.out, args.set, stage_dirs=args.stages,
                    input_dirs=args.input, verbose=True)
        if args.grid and saved:
            write_grid([s for s in saved if s.parent.name != "previews"], Path(args.grid),
                       args.grid_cols)
    except core.SamplingInterrupted:
        print("interrupted", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except core.CascadeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    images = [s for s in saved if s.parent.name != "previews"]
    previews = len(saved) - len(images)
    print(f"wrote {len(images)} image(s) to {args.out} in {time.time() - t0:.1f}s"
          + (f" (and {previews} preview(s) in previews/)" if previews else "")
          + (f" and the grid {args.grid}" if args.grid else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
