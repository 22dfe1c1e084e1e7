"""LPIPS (Zhang et al. 2018, VGG variant) from local weight files, for users who have them.

Nothing is downloaded. Two files are needed: a VGG16 backbone state dict in
torchvision's layout (``features.N.weight``/``bias``; extra keys such as the
classifier are ignored) and the LPIPS linear heads (``lin0..lin4.model.1.weight``
as in the lpips package's ``vgg.pth``). Both may be ``.safetensors`` or a
PyTorch file, which is read with ``torch.load(weights_only=True)`` (no pickled
code runs).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from cascade_core import CascadeError

VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
TAPS = (3, 8, 15, 22, 29)  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 in torchvision's numbering
WIDTHS = (64, 128, 256, 512, 512)


def _read(path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise CascadeError("LPIPS weight file not found", "an existing file", str(p))
    try:
        if p.suffix == ".safetensors":
            return load_file(str(p))
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CascadeError(f"cannot read LPIPS weights {p.name} ({type(e).__name__})") from None


class LPIPS(nn.Module):
    def __init__(self, backbone_path, linear_path):
        super().__init__()
        layers, cin = [], 3
        for v in VGG16:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU()]
                cin = v
        self.features = nn.Sequential(*layers)
        self.lins = nn.ModuleList(nn.Conv2d(w, 1, 1, bias=False) for w in WIDTHS)
        backbone = {k.removeprefix("features."): v for k, v in _read(backbone_path).items()
                    if k.startswith("features.") or k[0].isdigit()}
        linear = _read(linear_path)
        try:
            self.features.load_state_dict(backbone)
            for i, lin in enumerate(self.lins):
                lin.weight.data.copy_(linear[f"lin{i}.model.1.weight"])
        except (RuntimeError, KeyError) as e:
            raise CascadeError("LPIPS weights do not match VGG16 + lin0..lin4",
                               "torchvision vgg16 features "
                               "and lpips vgg.pth", str(e).splitlines()[0]) from None
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        self.requires_grad_(False).eval()
        self.source = f"LPIPS-VGG ({Path(backbone_path).name}, {Path(linear_path).name})"

    def train(self, mode: bool = True):
        return super().train(False)

    def forward(self, a, b):
        """Per-example LPIPS distance of NCHW images in [-1, 1]."""
        fa, fb = (a - self.shift) / self.scale, (b - self.shift) / self.scale
        total, k = 0.0, 0
        for i, layer in enumerate(self.features[:TAPS[-1] + 1]):
            fa, fb = layer(fa), layer(fb)
            if i in TAPS:
                diff = (F.normalize(fa, dim=1, eps=1e-10) - F.normalize(fb, dim=1, eps=1e-10)) ** 2
                total = total + self.lins[k](diff).mean(dim=(1, 2, 3))
                k += 1
        return total
