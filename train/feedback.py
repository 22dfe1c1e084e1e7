"""What a training run tells its operator: progress line, JSONL log, TensorBoard, sample grids."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
from PIL import Image

from cascade_core import to_uint8


class Progress:
    """A one-line progress bar with loss, images per second and ETA on stderr."""

    def __init__(self, total: int, start: int, enabled: bool = True, stream=sys.stderr):
        self.total, self.start, self.enabled, self.stream = total, start, enabled, stream
        self.t0, self.last = time.time(), 0.0

    def update(self, step: int, loss: float, images_per_s: float, lr: float, force: bool = False):
        if not self.enabled:
            return
        now = time.time()
        if not force and now - self.last < 0.5:
            return
        self.last = now
        done = step - self.start
        eta = (now - self.t0) / max(done, 1) * (self.total - step)
        frac = step / self.total
        bar = "#" * int(frac * 24)
        self.stream.write(f"\r[{bar:<24}] {step}/{self.total} loss {loss:.4f} {images_per_s:.1f} "
                          "img/s "
                          f"lr {lr:.2e} eta {_hms(eta)} ")
        self.stream.flush()

    def close(self):
        if self.enabled:
            self.stream.write("\n")


def _hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class MetricLog:
    """Appends one JSON object per logged step to ``metrics.jsonl`` (and to TensorBoard when
    installed)."""

    def __init__(self, out: Path, tensorboard: bool):
        self.path = out / "metrics.jsonl"
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(str(out / "tensorboard"))
            except Exception:  # tensorboard not installed: the JSONL log is enough
                self.tb = None

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
