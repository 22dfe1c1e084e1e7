"""A small CIFAR-sized classifier trained here: for "is the sample of its class" rates and for CAS.

It never sees generated images during its own training (real training split
only), and it is not the FID Inception network, so scores built on it are an
independent second opinion. Saved as safetensors with its config as metadata.

    python -m train.metrics.cifar_classifier --data ../shared/data/cifar10/train \\
        --out bench/models/cifar10-classifier.safetensors
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from cascade_core import CascadeError, from_uint8
from cascade_core.formats.atomic import atomic_write

from ..data import ImageSource


class SmallResNet(nn.Module):
    """Conv-BN-ReLU stages with residual blocks; input NCHW in [-1, 1] at any size >= 8."""

    def __init__(self, num_classes: int = 10, width: int = 16):
        super().__init__()
        self.config = {"num_classes": num_classes, "width": width}

        def block(cin, cout, stride):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
                                 nn.BatchNorm2d(cout), nn.ReLU())

        w = width
        self.stem = block(3, w, 1)
        self.stages = nn.ModuleList([
            nn.Sequential(block(w, w, 1), block(w, w, 1)),
            nn.Sequential(block(w, 2 * w, 2), block(2 * w, 2 * w, 1)),
            nn.Sequential(block(2 * w, 4 * w, 2), block(4 * w, 4 * w, 1)),
        ])
        self.head = nn.Linear(4 * w, num_classes)

    def features(self, x):
        h = self.stem(x)
        for stage in self.stages:
            down = stage[0](h)
            h = stage[1](down) + down
        return F.adaptive_avg_pool2d(h, 1).flatten(1)

    def forward(self, x):
        return self.head(self.features(x))


def save(model: SmallResNet, path, extra: dict):
    meta = {"cdm_classifier": json.dumps({**model.config, **extra})}
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def load(path) -> tuple[SmallResNet, dict]:
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})["cdm_classifier"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (OSError, KeyError, json.JSONDecodeError) as e:
        raise CascadeError(f"{path} is not a classifier file ({type(e).__name__})") from None
    model = SmallResNet(meta["num_classes"], meta["width"])
    model.load_state_dict(tensors)
    return model.eval(), meta


def load_split(path, size: int = 32, limit: int = 0, seed: int = 0):
    """All (or ``limit`` random) images of a folder/npz as uint8 NHWC plus labels."""
    src = ImageSource(path)
    idx = np.arange(len(src))
    if limit and limit < len(idx):
        idx = np.sort(np.random.default_rng(seed).choice(idx, limit, replace=False))
    images = np.stack([src.load(int(i), size) for i in idx])
    return images, src.labels[idx], src.class_names


def to_input(images_uint8: np.ndarray) -> torch.Tensor:
    return from_uint8(images_uint8)


@torch.no_grad()
def predict(model, images: torch.Tensor, batch: int = 500) -> torch.Tensor:
    """Class probabilities of NCHW images in [-1, 1] (resized to 32 if needed)."""
    out = []
    for chunk in images.split(batch):
        if chunk.shape[-1] != 32:
            chunk = F.interpolate(chunk, size=(32, 32), mode="bilinear", align_corners=False,
                                  antialias=True)
        out.append(model(chunk).softmax(-1))
    return torch.cat(out)


@dataclass(frozen=True)
class FitSettings:
    """How ``fit`` trains: epochs, batch, peak learning rate, seed, first-stage width."""

    epochs: int = 8
    batch: int = 128
    lr: float = 2e-3
    seed: int = 0
    width: int = 16


def fit(images: np.ndarray, labels: np.ndarray, num_classes: int,
        settings: FitSettings = FitSettings(), log=print) -> SmallResNet:
    """Train on uint8 NHWC images with flips and 4-pixel translations (one-cycle schedule)."""
    epochs, batch, lr, seed = settings.epochs, settings.batch, settings.lr, settings.seed
    torch.manual_seed(seed)
    model = SmallResNet(num_classes, settings.width)
    x_all, y_all = to_input(images), torch.from_numpy(labels).long()
    steps = epochs * (len(x_all) // batch)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps)
    g = torch.Generator().manual_seed(seed)
    step, t0 = 0, time.time()
    for epoch in range(epochs):
        perm = torch.randperm(len(x_all), generator=g)
        model.train()
        for b in range(len(x_all) // batch):
            i = perm[b * batch:(b + 1) * batch]
            x, y = x_all[i], y_all[i]
            flip = torch.rand(len(x), generator=g) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
            dx, dy = torch.randint(-4, 5, (2,), generator=g).tolist()
            padded = F.pad(x, (4, 4, 4, 4), mode="reflect")
            x = torch.roll(padded, (dy, dx), (2, 3))[..., 4:-4, 4:-4]
            loss = F.cross_entropy(model(x), y, label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
        log(f"epoch {epoch + 1}/{epochs} loss {loss.item():.3f} ({time.time() - t0:.0f}s)")
    return model.eval()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.metrics.cifar_classifier",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="labelled training images (class folders or .npz)")
    p.add_argument("--test", default="", help="labelled test images to report accuracy on")
    p.add_argument("--out", required=True, help="where to write the classifier .safetensors")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--limit", type=int, default=0,
                   help="train on this many random images (0 = all)")
    p.add_argument("--width", type=int, default=16, help="channels of the first stage")
    args = p.parse_args(argv)
    try:
        images, labels, names = load_split(args.data, limit=args.limit)
        if (labels < 0).any():
            raise CascadeError("the classifier needs labelled data", "class sub-folders",
                               "unlabelled images")
        t0 = time.time()
        model = fit(images, labels, len(names),
                    settings=FitSettings(epochs=args.epochs, width=args.width))
        extra = {"class_names": list(names), "train_images": len(images), "epochs": args.epochs,
                 "train_seconds": round(time.time() - t0)}
        if args.test:
            timg, tlab, _ = load_split(args.test)
            acc = float((predict(model, to_input(timg)).argmax(-1).numpy() == tlab).mean())
            extra["test_accuracy"] = round(acc, 4)
            print(f"test accuracy {acc:.4f} on {len(tlab)} images")
        save(model, args.out, extra)
    except CascadeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
