"""Stand-ins for the ComfyUI image I/O nodes the shipped workflows use, for the headless runner.

They mirror ComfyUI's LoadImage, SaveImage and PreviewImage: same ids,
widgets and outputs, and SaveImage embeds the prompt and the workflow as PNG
text chunks exactly where ComfyUI puts them, so a PNG dropped into ComfyUI
reopens its graph.
"""
from __future__ import annotations

import json
import os
import warnings

import torch
from PIL import Image, ImageOps
from PIL.PngImagePlugin import PngInfo

from .._core import core
from ..images import comfy_to_uint8, pil_to_comfy
from ..paths import escapes, inside
from .clip_loader import CLIPLoader
from .context import RunContext
from .png_writer import prefix_problem, save_png, target


class ContextNode:
    """A stand-in node that reads or writes files: the executor builds it with the run's context."""

    def __init__(self, context: RunContext):
        self.context = context


class LoadImage(ContextNode):
    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE", "MASK")
    FUNCTION = "load_image"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("STRING", {"image_upload": True})}}

    @classmethod
    def VALIDATE_INPUTS(cls, image):
        why = escapes(image)
        return True if why is None else f"image must be a file inside an input folder, not {why}"

    def load_image(self, image):
        candidates = (inside(d, image) for d in self.context.input_dirs)
        path = next((p for p in candidates if p is not None and p.is_file()), None)
        if path is None:
            raise core.CascadeError(f"LoadImage: {image!r} not found",
                                    f"a file in {[str(d) for d in self.context.input_dirs]}", image)
        with warnings.catch_warnings():  # the side check below is ours, and stricter
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            try:
                img = Image.open(path)
            except Image.DecompressionBombError as e:
                raise core.CascadeError(f"LoadImage: {image!r} is too large", "sides of at most "
                                        f"{core.base.memory.MAX_IMAGE_SIDE} pixels",
                                        str(e)[:80]) from None
        with img:
            w, h = img.size  # read from the header: nothing is decoded yet
            core.base.memory.check_image_side(f"LoadImage: {image!r}", h, w)
            core.base.memory.check_fits(f"LoadImage: {image!r} ({w}x{h} pixels)",
                                        w * h * 4 * 3 * 4)
            rgb, alpha = pil_to_comfy(ImageOps.exif_transpose(img))
        mask = 1.0 - alpha if alpha is not None else torch.zeros(rgb.shape[:2])
        return rgb[None], mask[None]


class SaveImage(ContextNode):
    CATEGORY = "image"
    RETURN_TYPES = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True
    subfolder = ""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",),
                             "filename_prefix": ("STRING", {"default": "ComfyUI"})}}

    @classmethod
    def VALIDATE_INPUTS(cls, filename_prefix="ComfyUI"):
        why = prefix_problem(filename_prefix)
        return True if why is None else why

    def save_images(self, images, filename_prefix="ComfyUI"):
        directory, name = target(self.context.out_dir / self.subfolder, filename_prefix)
        if not bool(torch.isfinite(images).all()):
            raise core.CascadeError("SaveImage: the images hold NaN or infinite values",
                                    "finite pixels", "non-finite values")
        meta = PngInfo()
        if self.context.prompt is not None:
            meta.add_text("prompt", json.dumps(self.context.prompt))
        for key, value in self.context.extra_pnginfo.items():
            meta.add_text(key, json.dumps(value))
        results = []
        for image in images:
            path = save_png(Image.fromarray(comfy_to_uint8(image)), directory, name=name,
                            pnginfo=meta)
            self.context.saved.append(path)
            sub = os.path.relpath(path.parent, self.context.out_dir)
            results.append({"filename": path.name, "subfolder": "" if sub == "." else sub,
                            "type": "output"})
        return {"ui": {"images": results}}


class PreviewImage(SaveImage):
    subfolder = "previews"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",)}}

    def save_images(self, images, filename_prefix="preview"):
        return super().save_images(images, filename_prefix)


BUILTIN = {"LoadImage": LoadImage, "SaveImage": SaveImage, "PreviewImage": PreviewImage,
           "CLIPLoader": CLIPLoader}
