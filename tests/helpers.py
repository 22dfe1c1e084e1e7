"""Shared test fixtures: tiny stages and the exact denoiser of Gaussian data."""
from __future__ import annotations

import math
from pathlib import Path

import torch

import cascade_core as cc
from cascade_core.run.denoiser import Prediction

TINY_UNET = cc.UNetConfig(base_channels=8, channel_mult=(1, 2), num_res_blocks=1,
                          attention_resolutions=(4,), num_heads=2)


def tiny_stage(role="base", resolution=8, low_res=0, seed=0, **kw) -> cc.Stage:
    torch.manual_seed(seed)
    kw.setdefault("unet", TINY_UNET)
    kw.setdefault("schedule", cc.ScheduleConfig("cosine", 100))
    stage = cc.Stage(cc.StageConfig(role=role, resolution=resolution, low_res=low_res, **kw))
    # zero-initialised output layers would make every stage the same function; perturb them
    with torch.no_grad():
        for p in stage.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return stage.eval()


class GaussianDenoiser:
    """The exact denoiser D(x, sigma) = E[x0 | x] for data x0 ~ N(mu, s^2 I)."""

    def __init__(self, mu: float, s: float):
        self.mu, self.s = mu, s

    def __call__(self, x, sigma):
        return self.mu + (self.s ** 2 / (self.s ** 2 + float(sigma) ** 2)) * (x - self.mu)

    def predict(self, x, sigma):
        return Prediction(self(x, sigma), None)

    def ode_solution(self, x_start, sigma_start, sigma_end):
        """The probability-flow ODE's exact solution from sigma_start to sigma_end."""
        ratio = math.sqrt((self.s ** 2 + sigma_end ** 2) / (self.s ** 2 + sigma_start ** 2))
        return self.mu + (x_start - self.mu) * ratio


def tiny_text_encoder(folder, name: str = "tiny-t5", seed: int = 4000, width: int = 0) -> Path:
    """A random T5 v1.1 encoder file (the prompt fixtures' 2-layer shape, or ``width`` wide) with
    the fixtures' SentencePiece model beside it: what ``--text-encoder`` and Load CLIP read."""
    import json
    import shutil

    from fixtures.deepfloyd.random_weights import random_state
    from safetensors import safe_open
    from safetensors.torch import save_file

    fixtures = Path(__file__).resolve().parent / "fixtures" / "t5"
    with safe_open(str(fixtures / "encoding.safetensors"), framework="pt") as f:
        shapes = json.loads(f.metadata()["shapes"])
    if width:
        shapes = {k: [width if d == 32 else d for d in v] for k, v in shapes.items()}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in random_state(shapes, seed).items()}, str(path))
    shutil.copy(fixtures / "spiece.model", folder / "spiece.model")
    return path


def class_captions(data, path, template: str = "a photo of a {}") -> Path:
    """A captions file for an image folder whose sub-folders are classes: each image captioned
    with its class name."""
    import json

    data, lines = Path(data), []
    for image in sorted(p for p in data.rglob("*") if p.is_file()):
        rel = image.relative_to(data).as_posix()
        lines.append(json.dumps({"image": rel, "caption": template.format(image.parent.name)}))
    Path(path).write_text("\n".join(lines) + "\n")
    return Path(path)


def content_folder(root: Path, fmt: str, count: int = 12) -> Path:
    """The seam bench's smooth content (``count`` 32 px images) saved as ``fmt`` (jpg at quality
    50, or a lossless png) in a one-class folder under ``root``: a dataset whose block grid is
    JPEG's alone. Returns the dataset folder."""
    from PIL import Image

    from bench.quality.seams import content

    folder = root / fmt / "a"
    folder.mkdir(parents=True)
    for i, img in enumerate(cc.to_uint8(content(count, 32))):
        Image.fromarray(img).save(folder / f"{i}.{fmt}", quality=50)
    return folder.parent
