"""What a training run tells its operator: progress line, JSONL log, TensorBoard, sample grids."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from PIL import Image
from tqdm import tqdm

from cascade_core import to_uint8


class Progress:
    """The training progress bar: tqdm, with loss, images per second and learning rate."""

    def __init__(self, total: int, start: int, enabled: bool = True, stream=sys.stderr):
        self.bar = tqdm(total=total, initial=start, disable=not enabled, file=stream,
                        mininterval=0.5, unit="step", dynamic_ncols=True, leave=True)

    def update(self, step: int, loss: float, images_per_s: float, lr: float, force: bool = False):
        """Move the bar to ``step`` and show the step's figures."""
        self.bar.set_postfix_str(f"loss {loss:.4f} {images_per_s:.1f} img/s lr {lr:.2e}",
                                 refresh=False)
        self.bar.update(step - self.bar.n)
        if force:
            self.bar.refresh()

    def close(self):
        """End the bar's line."""
        self.bar.close()


class MetricLog:
    """Appends one JSON object per logged step to ``metrics.jsonl`` (and to TensorBoard when
    installed). A run that starts at ``start`` first drops the lines of later steps, so the steps
    a resumed run replays appear once."""

    def __init__(self, out: Path, tensorboard: bool, start: int = 0):
        self.path = out / "metrics.jsonl"
        self._truncate(start)
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(str(out / "tensorboard"))
            except Exception:  # tensorboard not installed: the JSONL log is enough
                self.tb = None

    def _truncate(self, start: int):
        if not self.path.is_file():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                if int(json.loads(line)["step"]) <= start:
                    kept.append(line)
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a kill is dropped too
        self.path.write_text("".join(k + "\n" for k in kept))

    def write(self, step: int, **values):
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, **{k: float(v) for k, v in values.items()}}) + "\n")
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(k, float(v), step)

    def close(self):
        if self.tb is not None:
            self.tb.close()


def save_png(image: torch.Tensor, path: Path, scale: int = 1):
    img = Image.fromarray(to_uint8(image))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
