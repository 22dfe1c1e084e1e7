"""DeepFloyd IF's parameter names, in both released layouts, mapped onto the one U-Net.

The original release keeps ADM's layout (``input_blocks``, ``middle_block``,
``output_blocks``), so ADM's renames apply (``adm.to_our_keys``) plus the text
parts. The diffusers layout groups blocks by level (``down_blocks.{b}.resnets.{j}``)
and splits attention projections (``to_q``, ``to_k``, ``to_v``, ``add_k_proj``,
``add_v_proj``); its block indices are mapped onto our flat lists using the
per-level block counts of the stage's config, and the projections are joined in
the "new" head order the config declares for these files.
"""
from __future__ import annotations

import re

import torch

from ..models.config import StageConfig
from .adm import to_our_keys

RELEASE_TEXT = [(r"^aug_proj\.", "aug_mlp."), (r"^encoder_proj\.", "text.proj."),
                (r"^encoder_pooling\.", "text.pool."), (r"\.norm_encoder\.", ".text_norm."),
                (r"\.encoder_kv\.", ".text_kv.")]
TOP = [(r"^conv_in\.", "stem."), (r"^time_embedding\.linear_1\.", "noise_mlp.0."),
       (r"^time_embedding\.linear_2\.", "noise_mlp.2."),
       (r"^class_embedding\.linear_1\.", "aug_mlp.0."),
       (r"^class_embedding\.linear_2\.", "aug_mlp.2."), (r"^encoder_hid_proj\.", "text.proj."),
       (r"^add_embedding\.norm1\.", "text.pool.0."), (r"^add_embedding\.pool\.", "text.pool.1."),
       (r"^add_embedding\.proj\.", "text.pool.2."), (r"^add_embedding\.norm2\.", "text.pool.3."),
       (r"^conv_norm_out\.", "head.0."), (r"^conv_out\.", "head.2.")]
INSIDE = [(r"\.time_emb_proj\.", ".emb."), (r"\.conv_shortcut\.", ".skip."),
          (r"\.group_norm\.", ".norm."), (r"\.to_out\.0\.", ".out."),
          (r"\.norm_cross\.", ".text_norm.")]
# the projections joined into one tensor: target name -> its parts in order
JOINED = {"qkv": ("to_q", "to_k", "to_v"), "text_kv": ("add_k_proj", "add_v_proj")}


def from_release(state: dict) -> dict:
    """An original IF release state dict renamed onto our module names (values untouched)."""
    out = {}
    for key, value in to_our_keys(state, "unet").items():
        for pattern, repl in RELEASE_TEXT:
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out


def _layout(cfg: StageConfig):
    """(first flat index of each level's down blocks, of each up block, blocks per level)."""
    blocks, down, up = cfg.unet.level_blocks, [], []
    position = 0
    for level, n in enumerate(blocks):
        down.append(position)
        position += n + (1 if level < len(blocks) - 1 else 0)
    position = 0
    for level in reversed(range(len(blocks))):
        up.append(position)
        position += blocks[level] + 1
    return down, up, blocks


def _block_key(key: str, cfg: StageConfig, layout) -> str:
    down, up, blocks = layout
    levels = len(blocks)
    attention = {cfg.resolution // 2 ** i for i in range(levels)} & set(
        cfg.unet.attention_resolutions)
    if m := re.match(r"^down_blocks\.(\d+)\.(resnets|attentions|downsamplers)\.(\d+)\.(.*)$", key):
        b, part, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        if part == "downsamplers":
            return f"down.{down[b] + blocks[b]}.0.{rest}"
        return f"down.{down[b] + j}.{0 if part == 'resnets' else 1}.{rest}"
    if m := re.match(r"^up_blocks\.(\d+)\.(resnets|attentions|upsamplers)\.(\d+)\.(.*)$", key):
        b, part, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        level = levels - 1 - b
        if part == "upsamplers":
            slot = 2 if cfg.resolution // 2 ** level in attention else 1
            return f"up.{up[b] + blocks[level]}.{slot}.{rest}"
        return f"up.{up[b] + j}.{0 if part == 'resnets' else 1}.{rest}"
    if m := re.match(r"^mid_block\.(resnets|attentions)\.(\d+)\.(.*)$", key):
        slot = {("resnets", "0"): 0, ("attentions", "0"): 1, ("resnets", "1"): 2}.get((m[1], m[2]))
        return key if slot is None else f"mid.{slot}.{m[3]}"
    return key


def from_diffusers(state: dict, cfg: StageConfig) -> dict:
    """A diffusers ``UNet2DConditionModel`` state dict of an IF stage renamed onto our module
    names, with each attention's projections joined (q|k|v and the text's k|v)."""
    layout, out, parts = _layout(cfg), {}, {}
    for key, value in state.items():
        new = key
        for pattern, repl in TOP:
            new = re.sub(pattern, repl, new)
        new = _block_key(new, cfg, layout)
        for pattern, repl in INSIDE:
            new = re.sub(pattern, repl, new)
        joined = next(((target, name) for target, names in JOINED.items() for name in names
                       if f".{name}." in new), None)
        if joined is None:
            out[new] = value
            continue
        target, name = joined
        prefix, suffix = new.split(f".{name}.")
        parts.setdefault(f"{prefix}.{target}.{suffix}", {})[name] = value
    for key, pieces in parts.items():
        target = key.split(".")[-2]
        order = [pieces[n] for n in JOINED[target] if n in pieces]
        out[key] = torch.cat(order, dim=0)
    return out
