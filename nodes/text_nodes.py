"""CDM Text Encode: a prompt into a text stage's conditioning (DeepFloyd IF's T5 embeddings).

Inside ComfyUI the encoder is ComfyUI's own ``CLIP`` (Load CLIP with a ``t5xxl`` file, which many
users already have; IF's ``text_encoder/`` is the same T5-v1.1-XXL): the node asks it for token
embeddings and brings them to IF's 77 tokens. The headless runner's Load CLIP gives the pack's
own ``PromptEncoder`` instead, which encodes exactly as IF's pipelines do (padding masked inside
T5).
"""
from __future__ import annotations

import logging

import torch

from . import widgets as W
from ._core import core

log = logging.getLogger("cascade_core")
TOKENS = 77  # IF's prompt length


class CDMTextEncode:
    """A prompt and a negative prompt -> the embeddings a text stage is conditioned on."""

    CATEGORY = W.CATEGORY
    RETURN_TYPES = (W.TEXT_TYPE,)
    RETURN_NAMES = ("text",)
    OUTPUT_TOOLTIPS = ("the prompt's T5 embeddings, and the negative prompt's for guidance: "
                       "into the text input of a sampling node",)
    FUNCTION = "encode"
    DESCRIPTION = ("Encodes a prompt for a text-conditioned stage (DeepFloyd IF) with T5-v1.1-XXL "
                   "loaded by Load CLIP (a t5xxl file, or IF's text_encoder). The negative "
                   "prompt (empty by default) is what classifier-free guidance steers away from. "
                   "Prompts past 77 tokens are cut, as IF cuts them.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "clip": ("CLIP", {"tooltip": "T5-v1.1-XXL from Load CLIP (e.g. t5xxl_fp16.safetensors "
                                         "with type sd3)"}),
            "prompt": ("STRING", {"multiline": True, "dynamicPrompts": True,
                                  "tooltip": "what the image shows, in plain words"}),
            "negative_prompt": ("STRING", {"multiline": True, "default": "",
                                           "tooltip": "what guidance steers away from; empty = "
                                                      "IF's default (the empty prompt)"}),
        }}

    def encode(self, clip, prompt, negative_prompt):
        return (encode_prompt(clip, prompt, negative_prompt),)


def encode_prompt(clip, prompt: str, negative: str) -> core.TextCond:
    """The prompt's conditioning through ``clip``: the pack's ``PromptEncoder`` (exact IF
    encoding) or ComfyUI's CLIP object (its T5 encoding, brought to 77 tokens)."""
    if isinstance(clip, core.PromptEncoder):
        return clip.encode(prompt, negative=negative)
    if not (hasattr(clip, "tokenize") and hasattr(clip, "encode_from_tokens")):
        raise core.CascadeError("CDM Text Encode needs a text encoder", "a CLIP from Load CLIP "
                                "(T5-v1.1-XXL)", type(clip).__name__)
    return core.TextCond(comfy_embed(clip, prompt), comfy_embed(clip, negative), encoder="")


def comfy_embed(clip, text: str) -> torch.Tensor:
    """(1, 77, width) T5 embeddings of ``text`` from ComfyUI's CLIP: longer outputs are cut (with
    a warning), shorter ones (encoders that do not pad) padded with zeros."""
    out = clip.encode_from_tokens(clip.tokenize(text), return_dict=True)
    cond = out["cond"] if isinstance(out, dict) else out[0]
    cond = cond.float()
    if cond.shape[1] > TOKENS:
        log.warning("CDM Text Encode: the prompt gave %d tokens; IF reads %d, the rest is cut",
                    cond.shape[1], TOKENS)
        return cond[:, :TOKENS]
    return torch.nn.functional.pad(cond, (0, 0, 0, TOKENS - cond.shape[1]))
