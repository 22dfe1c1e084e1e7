"""How a text-conditioned U-Net takes its prompt: token embeddings projected for attention, and
pooled into the embedding (DeepFloyd IF's text conditioning).

The tokens (B, L, width) from a text encoder (T5-v1.1-XXL for IF: width 4096)
reach the network twice: projected to ``text_channels`` (the keys and values
every attention layer adds to the image's, ``unet.Attention``), and, through
layer norm, attention pooling (the tokens' mean, plus a learned position,
queries the tokens), a projection and another layer norm, added to the
embedding of the noise level like a class would be.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..base.errors import CascadeError


class AttentionPool(nn.Module):
    """One query, the tokens' mean plus a learned position, attends over itself and the tokens;
    its output (the heads side by side, no projection) is the pooled text."""

    def __init__(self, heads: int, width: int):
        super().__init__()
        self.heads = heads
        self.positional_embedding = nn.Parameter(torch.randn(1, width) / width ** 0.5)
        self.q_proj = nn.Linear(width, width)
        self.k_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, L, width) -> (B, width)."""
        query = tokens.mean(dim=1, keepdim=True) + self.positional_embedding.to(tokens.dtype)
        keys = torch.cat([query, tokens], dim=1)
        q, k, v = (rearrange(t, "b s (n d) -> b n s d", n=self.heads)
                   for t in (self.q_proj(query), self.k_proj(keys), self.v_proj(keys)))
        return rearrange(F.scaled_dot_product_attention(q, k, v), "b n 1 d -> b (n d)")


class TextPool(nn.Sequential):
    """LayerNorm, attention pooling, a projection to the embedding's width, LayerNorm."""

    def __init__(self, width: int, heads: int, emb_dim: int):
        layers = (nn.LayerNorm(width), AttentionPool(heads, width), nn.Linear(width, emb_dim),
                  nn.LayerNorm(emb_dim))
        super().__init__(*layers)


class TextInput(nn.Module):
    """The projection of the tokens for attention (where the encoder's width differs from the
    U-Net's text channels) and the pooled text for the embedding (where the U-Net has it)."""

    def __init__(self, width: int, u, emb_dim: int):
        super().__init__()
        self.proj = nn.Linear(width, u.text_channels) if width != u.text_channels else None
        self.pool = TextPool(width, u.text_pool_heads, emb_dim) if u.text_pool_heads else None

    def forward(self, text, width: int, batch: int):
        """(tokens for attention, pooled embedding or None) of ``text`` (B, L, width)."""
        if not isinstance(text, torch.Tensor):
            raise CascadeError("this stage is conditioned on text", "token embeddings (B, L, "
                               f"{width})", "no text")
        if text.ndim != 3 or text.shape[-1] != width or text.shape[0] != batch:
            raise CascadeError("text embeddings of the wrong shape", f"({batch}, L, {width})",
                               tuple(text.shape))
        tokens = text if self.proj is None else self.proj(text)
        return tokens, None if self.pool is None else self.pool(text)
