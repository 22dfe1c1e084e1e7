"""A perceptual loss from a network we can have offline: the small CIFAR classifier trained here.

LPIPS needs ImageNet-pretrained VGG/AlexNet weights that cannot be downloaded
here. This loss compares unit-normalised feature maps of every stage of
``bench/models/cifar10-classifier.safetensors`` (or any classifier file from
``python -m train.metrics.cifar_classifier``), LPIPS-style with equal layer
weights. It is deliberately not the FID Inception network: training against
the evaluation network would game the metric.
"""
from __future__ import annotations

from pathlib import Path

import torch.nn.functional as F
from torch import nn

from cascade_core import CascadeError

from .metrics import cifar_classifier as C

CLASSIFIER_FILE = "cifar10-classifier.safetensors"
DEFAULT = Path(__file__).resolve().parents[1] / "bench" / "models" / CLASSIFIER_FILE


class PerceptualLoss(nn.Module):
    def __init__(self, path=None):
        super().__init__()
        path = Path(path) if path else DEFAULT
        if not path.is_file():
            raise CascadeError("no perceptual network",
                               "a classifier file (python -m train.metrics.cifar_classifier) "
                               "or --perceptual-weight 0", str(path))
        self.net, self.meta = C.load(path)
        self.net.requires_grad_(False).eval()
        self.source = path.name

    def train(self, mode: bool = True):  # the feature network always stays in eval mode
        super().train(mode)
        self.net.eval()
        return self

    def _features(self, x):
        if x.shape[-1] != 32:
            x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False,
                              antialias=True)
        h = self.net.stem(x)
        feats = [h]
        for stage in self.net.stages:
            down = stage[0](h)
            h = stage[1](down) + down
            feats.append(h)
        return feats

    def forward(self, a, b):
        """Per-example distance of NCHW images in [-1, 1]."""
        total = 0.0
        for fa, fb in zip(self._features(a), self._features(b)):
            na, nb = F.normalize(fa, dim=1), F.normalize(fb, dim=1)
            total = total + ((na - nb) ** 2).sum(1).mean(dim=(1, 2))
        return total
