"""Stand-ins for the ComfyUI image I/O nodes the shipped workflows use, for the headless runner.

They mirror ComfyUI's LoadImage, SaveImage and PreviewImage: same ids,
widgets and outputs, and SaveImage embeds the prompt and the workflow as PNG
text chunks exactly where ComfyUI puts them, so a PNG dropped into ComfyUI
reopens its graph.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from PIL.PngImagePlugin import PngInfo

from ._core import core


class RunContext:
    """Where the headless run reads inputs from and writes images to."""

    def __init__(self, out_dir, input_dirs=(), prompt=None, workflow=None):
        self.out_dir = Path(out_dir)
        self.input_dirs = [Path(d) for d in input_dirs]
        self.prompt, self.workflow = prompt, workflow
        self.saved: list[Path] = []


CONTEXT = RunContext("output")


class LoadImage:
    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE", "MASK")
    FUNCTION = "load_image"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("STRING", {"image_upload": True})}}

    def load_image(self, image):
        path = next((d / image for d in CONTEXT.input_dirs if (d / image).is_file()), None)
        if path is None and Path(image).is_file():
            path = Path(image)
        if path is None:
            raise core.CascadeError(f"LoadImage: {image!r} not found",
                                    f"a file in {[str(d) for d in CONTEXT.input_dirs]}", image)
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            rgb = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
            alpha = np.asarray(img.getchannel("A"), dtype=np.float32) / 255.0 if "A" in img.getbands() else None
        mask = 1.0 - torch.from_numpy(alpha) if alpha is not None else torch.zeros(rgb.shape[:2])
        return torch.from_numpy(rgb)[None], mask[None]


class SaveImage:
    CATEGORY = "image"
    RETURN_TYPES = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True
    subfolder = ""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",), "filename_prefix": ("STRING", {"default": "ComfyUI"})}}

    def save_images(self, images, filename_prefix="ComfyUI"):
        folder = CONTEXT.out_dir / self.subfolder
        folder.mkdir(parents=True, exist_ok=True)
        (folder / filename_prefix).parent.mkdir(parents=True, exist_ok=True)
        counter = 1 + sum(1 for _ in folder.glob(f"{filename_prefix}_*_.png"))
        results = []
        for image in images:
            arr = (image.clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)
            meta = PngInfo()
            if CONTEXT.prompt is not None:
                meta.add_text("prompt", json.dumps(CONTEXT.prompt))
            if CONTEXT.workflow is not None:
                meta.add_text("workflow", json.dumps(CONTEXT.workflow))
            path = folder / f"{filename_prefix}_{counter:05}_.png"
            Image.fromarray(arr).save(path, pnginfo=meta, compress_level=4)
            CONTEXT.saved.append(path)
            results.append({"filename": path.name, "subfolder": self.subfolder, "type": "output"})
            counter += 1
        return {"ui": {"images": results}}


class PreviewImage(SaveImage):
    subfolder = "previews"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",)}}

    def save_images(self, images, filename_prefix="preview"):
        return super().save_images(images, filename_prefix)


BUILTIN = {"LoadImage": LoadImage, "SaveImage": SaveImage, "PreviewImage": PreviewImage}
