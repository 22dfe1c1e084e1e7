"""The T5 v1.1 encoder DeepFloyd IF reads prompts with (T5-v1.1-XXL: 24 layers, width 4096).

Written here rather than taken from ``transformers`` so that the pack's default install stays
small; its parameter names are those of the released checkpoints (``encoder.block.0.layer.0.
SelfAttention.q.weight`` ...), so IF's ``text_encoder/`` and ComfyUI's ``t5xxl`` files load as
they are. T5 v1.1 in short: RMS layer norms (no mean, no bias), unscaled dot-product attention
with a learned bias per head and relative-position bucket (computed once, in the first layer,
and shared by all), a gated-GELU feed-forward, no biases anywhere. The padding mask is applied
inside the encoder's attention only; what it returns for the padding positions is kept, as IF
gives the whole 77-token sequence to its U-Net without a mask.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..base.errors import CascadeError


@dataclass(frozen=True)
class T5Config:
    """The encoder's shape, named as in a checkpoint's ``config.json``."""

    vocab_size: int = 32128
    d_model: int = 4096
    d_kv: int = 64
    d_ff: int = 10240
    num_layers: int = 24
    num_heads: int = 64
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    layer_norm_epsilon: float = 1e-6

    @classmethod
    def from_json(cls, d: dict) -> T5Config:
        """The fields of a T5 ``config.json`` this encoder uses; others are ignored, but a
        feed-forward other than T5 v1.1's gated GELU is refused."""
        act = d.get("feed_forward_proj", "gated-gelu")
        if act != "gated-gelu":
            raise CascadeError("only T5 v1.1 encoders (gated-GELU feed-forward) are supported",
                               "feed_forward_proj 'gated-gelu'", act)
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


class RMSNorm(nn.Module):
    """T5's layer norm: divide by the root mean square (in float32), scale, no shift."""

    def __init__(self, width: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.eps = eps

    def forward(self, x):
        """x / rms(x) * weight, in the weight's dtype."""
        scale = torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * (x.float() * scale).to(self.weight.dtype)


def position_buckets(length: int, *, buckets: int, max_distance: int, device) -> torch.Tensor:
    """(L, L) bucket of each key position relative to each query position (bidirectional):
    half the buckets per direction; the first half of those exact distances, the rest
    logarithmic up to ``max_distance``."""
    pos = torch.arange(length, device=device)
    rel = pos[None, :] - pos[:, None]
    half = buckets // 2
    bucket = (rel > 0).long() * half
    dist = rel.abs()
    exact = half // 2
    far = exact + (torch.log(dist.float().clamp(min=1) / exact) / math.log(max_distance / exact)
                   * (half - exact)).long()
    far = far.clamp(max=half - 1)
    return bucket + torch.where(dist < exact, dist, far)


class SelfAttention(nn.Module):
    """Multi-head attention without a softmax scale (T5 folds it into the weights)."""

    def __init__(self, cfg: T5Config, has_bias: bool):
        super().__init__()
        inner = cfg.num_heads * cfg.d_kv
        self.heads, self.cfg = cfg.num_heads, cfg
        self.q, self.k, self.v = (nn.Linear(cfg.d_model, inner, bias=False) for _ in range(3))
        self.o = nn.Linear(inner, cfg.d_model, bias=False)
        if has_bias:
            self.relative_attention_bias = nn.Embedding(cfg.relative_attention_num_buckets,
                                                        cfg.num_heads)

    def position_bias(self, length: int, device) -> torch.Tensor:
        """(1, heads, L, L) learned bias of each relative-position bucket."""
        b = position_buckets(length, buckets=self.cfg.relative_attention_num_buckets,
                             max_distance=self.cfg.relative_attention_max_distance, device=device)
        return self.relative_attention_bias(b).permute(2, 0, 1)[None]

    def forward(self, x, bias):
        """Attention of ``x`` (B, L, d_model) over itself plus ``bias`` (mask included)."""
        B, L, _ = x.shape
        q, k, v = (p(x).view(B, L, self.heads, -1).transpose(1, 2) for p in (self.q, self.k,
                                                                            self.v))
        scores = (q @ k.transpose(-1, -2)).float() + bias
        out = scores.softmax(-1).to(v.dtype) @ v
        return self.o(out.transpose(1, 2).reshape(B, L, -1))


class AttentionLayer(nn.Module):
    """Pre-norm self-attention with a residual."""

    def __init__(self, cfg: T5Config, has_bias: bool):
        super().__init__()
        self.SelfAttention = SelfAttention(cfg, has_bias)
        self.layer_norm = RMSNorm(cfg.d_model, cfg.layer_norm_epsilon)

    def forward(self, x, bias):
        """x + attention(norm(x))."""
        return x + self.SelfAttention(self.layer_norm(x), bias)


class GatedGelu(nn.Module):
    """wo(gelu_tanh(wi_0 x) * wi_1 x)."""

    def __init__(self, cfg: T5Config):
        super().__init__()
        self.wi_0 = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.wi_1 = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.wo = nn.Linear(cfg.d_ff, cfg.d_model, bias=False)

    def forward(self, x):
        """The gated feed-forward."""
        return self.wo(F.gelu(self.wi_0(x), approximate="tanh") * self.wi_1(x))


class FeedForwardLayer(nn.Module):
    """Pre-norm gated feed-forward with a residual."""

    def __init__(self, cfg: T5Config):
        super().__init__()
        self.DenseReluDense = GatedGelu(cfg)
        self.layer_norm = RMSNorm(cfg.d_model, cfg.layer_norm_epsilon)

    def forward(self, x):
        """x + ff(norm(x))."""
        return x + self.DenseReluDense(self.layer_norm(x))


class Block(nn.Module):
    """One encoder layer: ``layer.0`` attention, ``layer.1`` feed-forward."""

    def __init__(self, cfg: T5Config, first: bool):
        super().__init__()
        self.layer = nn.ModuleList([AttentionLayer(cfg, first), FeedForwardLayer(cfg)])

    def forward(self, x, bias):
        """Attention, then feed-forward."""
        return self.layer[1](self.layer[0](x, bias))


class Encoder(nn.Module):
    """The blocks and the final norm (``encoder.*`` in a checkpoint)."""

    def __init__(self, cfg: T5Config):
        super().__init__()
        self.block = nn.ModuleList([Block(cfg, i == 0) for i in range(cfg.num_layers)])
        self.final_layer_norm = RMSNorm(cfg.d_model, cfg.layer_norm_epsilon)


class T5Encoder(nn.Module):
    """Token ids (B, L) and their mask -> token embeddings (B, L, d_model)."""

    def __init__(self, cfg: T5Config):
        super().__init__()
        self.cfg = cfg
        self.shared = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.encoder = Encoder(cfg)

    @property
    def width(self) -> int:
        """The width of the embeddings it gives (4096 for T5-v1.1-XXL)."""
        return self.cfg.d_model

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Embeddings of ``ids``; ``mask`` (B, L) is 1 for tokens, 0 for padding, which no token
        attends to."""
        x = self.shared(ids)
        L = ids.shape[1]
        bias = self.encoder.block[0].layer[0].SelfAttention.position_bias(L, ids.device).float()
        hidden = (1 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        bias = bias + hidden
        for block in self.encoder.block:
            x = block(x, bias)
        return self.encoder.final_layer_norm(x)
