"""A stand-in for ComfyUI's Load CLIP in the headless runner: T5-v1.1-XXL for DeepFloyd IF's
prompts, read into the pack's own encoder (``cascade_core.PromptEncoder``, which encodes exactly
as IF's pipelines do).

``clip_name`` is found in the stage folders (``--stages``): a ``t5xxl`` ``.safetensors`` file or
IF's ``text_encoder`` folder. T5's tokenizer (``spiece.model``) is looked for beside it and in a
``tokenizer/`` folder next to it, which is where IF's download keeps it.
"""
from __future__ import annotations

from pathlib import Path

from .. import comfy_bridge as bridge
from .._core import core
from ..known_files import missing_file_hint
from ..paths import inside


def find(name: str) -> Path:
    """The file or folder ``name`` in the stage folders; a clear error naming them if absent."""
    for folder in bridge.stage_dirs():
        path = inside(folder, name)
        if path is not None and path.exists():
            return path
    hint = missing_file_hint(name) or (" (put T5-v1.1-XXL there: a t5xxl .safetensors with "
                                       "spiece.model beside it, or IF's download with "
                                       "text_encoder/ and tokenizer/)")
    raise core.CheckpointError(f"Load CLIP: no text encoder {name!r} in the stage folders "
                               f"({', '.join(str(d) for d in bridge.stage_dirs())}){hint}")


class CLIPLoader:
    CATEGORY = "advanced/loaders"
    RETURN_TYPES = ("CLIP",)
    FUNCTION = "load_clip"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"clip_name": ("STRING", {}), "type": ("STRING", {"default": "sd3"})},
                "optional": {"device": (["default", "cpu"], {"default": "default"})}}

    def load_clip(self, clip_name, type="sd3", device="default"):  # noqa: A002 (ComfyUI's name)
        path = find(clip_name)
        # bf16 where the device computes it natively (T5-XXL: 9.5 GB instead of 19), else fp32
        dtype = core.base.precision.resolve_dtype("auto", bridge.compute_device())
        try:
            encoder = core.PromptEncoder.load(path, dtype=dtype)
        except core.CheckpointError as e:
            raise core.CheckpointError(f"Load CLIP: {e}") from None
        if device != "cpu":
            encoder.encoder.to(bridge.compute_device())
        return (encoder,)
