"""CDM Text Encode: a prompt into a text stage's conditioning (DeepFloyd IF's T5 embeddings).

Inside ComfyUI the encoder is ComfyUI's own ``CLIP`` (Load CLIP with a ``t5xxl`` file, which many
users already have; IF's ``text_encoder/`` is the same T5-v1.1-XXL). ComfyUI's own encoding does
not mask the padding inside T5 (its sd3 path) where IF's pipelines do, so the node tokenizes
with ComfyUI's tokenizer, then runs ComfyUI's loaded T5 itself with IF's mask over IF's 77
tokens: IF's encoding, from ComfyUI's model. A CLIP whose T5 cannot be reached that way (another
encoder type, a future ComfyUI) falls back to ComfyUI's public encoding, brought to 77 tokens,
with a warning. The headless runner's Load CLIP gives the pack's own ``PromptEncoder``, which
encodes exactly as IF's pipelines do.
"""
from __future__ import annotations

import logging

import torch

from . import widgets as W
from ._core import core

log = logging.getLogger("cascade_core")
TOKENS = 77  # IF's prompt length
PAD, EOS = 0, 1  # T5's padding and end tokens


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
    t5 = comfy_t5(clip)
    if t5 is None:
        log.warning("CDM Text Encode: this CLIP's T5 cannot be run with IF's padding mask; using "
                    "ComfyUI's own (unmasked) encoding, which differs from IF's")
        return core.TextCond(comfy_embed(clip, prompt), comfy_embed(clip, negative), encoder="")
    return core.TextCond(masked_embed(clip, t5, prompt), masked_embed(clip, t5, negative),
                         encoder="")


def comfy_t5(clip):
    """ComfyUI's loaded T5 encoder inside ``clip`` (its sd3 / t5xxl path), or None."""
    model = getattr(getattr(clip, "cond_stage_model", None), "t5xxl", None)
    t5 = getattr(model, "transformer", None)
    return t5 if callable(t5) and hasattr(clip.tokenize(""), "get") else None


def masked_embed(clip, t5, text: str) -> torch.Tensor:
    """(1, 77, width) IF's encoding of ``text`` with ComfyUI's tokenizer and T5: lower-cased and
    stripped, cut to 76 tokens and ``</s>``, padded to 77, the padding masked inside T5."""
    pieces = [t[0] for t in clip.tokenize(core.formats.t5_tokenizer.preprocess(text))["t5xxl"][0]]
    end = pieces.index(EOS) if EOS in pieces else len(pieces)
    if end > TOKENS - 1:
        log.warning("CDM Text Encode: the prompt has %d tokens; IF reads %d, so %r is cut",
                    end + 1, TOKENS, dropped_words(clip, pieces[TOKENS - 1:end]))
    kept = pieces[:min(end, TOKENS - 1)] + [EOS]
    ids = torch.tensor([kept + [PAD] * (TOKENS - len(kept))])
    mask = (torch.arange(TOKENS) < len(kept)).long()[None]
    if hasattr(clip, "load_model"):
        clip.load_model()  # ComfyUI's model management places T5 on its device
    device = next(t5.parameters()).device
    with torch.no_grad():
        out = t5(ids.to(device), mask.to(device), dtype=torch.float32)
    return (out[0] if isinstance(out, tuple) else out).float().cpu()


def dropped_words(clip, ids: list) -> str:
    """The text of ``ids`` through ComfyUI's T5 tokenizer, where it can decode."""
    tokenizer = getattr(getattr(getattr(clip, "tokenizer", None), "t5xxl", None), "tokenizer",
                        None)
    try:
        return tokenizer.decode(ids)
    except Exception:  # a tokenizer of another shape: say how much instead
        return f"{len(ids)} tokens"


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
