"""The state of one headless run, passed explicitly to the nodes that read or write files."""
from __future__ import annotations

from pathlib import Path


class RunContext:
    """Where one headless run reads inputs from and writes images to, and what it wrote."""

    def __init__(self, out_dir, input_dirs=(), prompt=None, workflow=None):
        self.out_dir = Path(out_dir)
        self.input_dirs = [Path(d) for d in input_dirs]
        self.prompt, self.workflow = prompt, workflow
        self.saved: list[Path] = []
        # PNG text chunks beyond the prompt, as ComfyUI's extra_pnginfo: the workflow, and what
        # nodes add (the precision each sampling node resolved "auto" to)
        self.extra_pnginfo: dict = {} if workflow is None else {"workflow": workflow}
