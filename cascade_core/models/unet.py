"""The ADM/SR3-family U-Net every diffusion stage uses.

Residual blocks take a scale-shift embedding of the noise level (plus the
augmentation level ``s`` and the class), attention uses PyTorch's fused
``scaled_dot_product_attention``, and SR/refiner stages concatenate the
upsampled conditioning image with ``x_t``. It is fully convolutional apart
from attention, so a stage trained at one size runs at any multiple of
``2 ** (levels - 1)``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .config import StageConfig


def sinusoidal_embedding(x: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Transformer-style (cos, sin) features of the scalars ``x`` (B,) at ``dim // 2``
    geometrically spaced frequencies: how noise levels, ``s`` and sigmas enter the networks."""
    half = dim // 2
    steps = torch.arange(half, device=x.device, dtype=torch.float32)
    freqs = torch.exp(-math.log(max_period) * steps / half)
    args = x.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 32 groups that divide ``channels`` (small test widths too)."""
    groups = math.gcd(32, channels)
    return nn.GroupNorm(groups, channels)


class ResBlock(nn.Module):
    """Residual block whose second normalisation is modulated by the embedding (ADM's
    scale-shift); the last convolution starts at zero, so a new block is the identity."""

    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float):
        super().__init__()
        self.norm1, self.conv1 = group_norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * cout)
        self.norm2, self.drop = group_norm(cout), nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, emb):
        """``x`` (B, cin, H, W) and embedding ``emb`` (B, emb_dim) -> (B, cout, H, W)."""
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = rearrange(self.emb(F.silu(emb)), "b (two c) -> two b c 1 1", two=2)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.drop(F.silu(h)))
        return self.skip(x) + h


class Attention(nn.Module):
    """Multi-head self-attention over all positions, through the fused SDPA kernel; a residual
    that starts at zero. Channels that do not split into ``heads`` fall back to one head."""

    def __init__(self, channels: int, heads: int):
        super().__init__()
        self.heads = heads if channels % heads == 0 else 1
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x, emb=None):
        """``x`` plus attention over its ``H * W`` positions (``emb`` is unused)."""
        h, w = x.shape[-2:]
        q, k, v = rearrange(self.qkv(self.norm(x)), "b (three n d) h w -> three b n (h w) d",
                            three=3, n=self.heads)
        o = F.scaled_dot_product_attention(q, k, v)
        return x + self.out(rearrange(o, "b n (h w) d -> b (n d) h w", h=h, w=w))


class Downsample(nn.Module):
    """Strided 3x3 convolution: halves the resolution."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x, emb=None):
        """Half-resolution ``x`` (``emb`` is unused)."""
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour doubling, then a 3x3 convolution."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x, emb=None):
        """Double-resolution ``x`` (``emb`` is unused)."""
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class Block(nn.Sequential):
    """A ResBlock optionally followed by attention; both take the embedding."""

    def forward(self, x, emb):
        """Run each layer with the same embedding."""
        for layer in self:
            x = layer(x, emb)
        return x


class UNet(nn.Module):
    """The denoising network of every diffusion stage (base, SR and refiner).

    The layout follows ADM: a stem convolution; per resolution level,
    ``num_res_blocks`` residual blocks (with attention at the feature-map sizes
    listed in ``attention_resolutions``) and a downsampling; a middle of
    block-attention-block; the mirror image upwards with one extra block per
    level, each taking the skip connection of its partner; a zero-initialised
    head. Why it is built this way:

    * one embedding of width ``4 * base_channels`` carries everything the
      blocks condition on: the noise level, plus the augmentation level ``s``
      (SR and refiner stages, CDM section 3: the model must know how noisy its
      conditioning is) and the class (with one extra "null" row for
      classifier-free guidance and unconditional sampling);
    * conditioned stages concatenate the upsampled low-res image with ``x_t``
      at the input (SR3 / CDM), so the stem takes twice the channels;
    * stages that learn their variance output twice the channels (eps or v,
      then the log-variance interpolation of improved DDPM).
    """

    def __init__(self, cfg: StageConfig):
        super().__init__()
        u, ch = cfg.unet, cfg.unet.base_channels
        self.cfg = cfg
        emb_dim = 4 * ch
        self.emb_dim = emb_dim
        self.noise_mlp = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(),
                                       nn.Linear(emb_dim, emb_dim))
        self.aug_mlp = (nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(),
                                      nn.Linear(emb_dim, emb_dim))
                        if cfg.conditioned else None)
        self.class_emb = nn.Embedding(cfg.num_classes + 1, emb_dim) if cfg.num_classes else None
        in_ch = cfg.channels * (2 if cfg.conditioned else 1)
        out_ch = cfg.channels * (2 if cfg.learn_sigma else 1)
        self.stem = nn.Conv2d(in_ch, ch, 3, padding=1)

        attn_levels = {i for i in range(len(u.channel_mult))
                       if cfg.resolution // 2 ** i in u.attention_resolutions}
        self.down, skips, cur = nn.ModuleList(), [ch], ch
        for level, mult in enumerate(u.channel_mult):
            for _ in range(u.num_res_blocks):
                layers = [ResBlock(cur, ch * mult, emb_dim, dropout=u.dropout)]
                cur = ch * mult
                if level in attn_levels:
                    layers.append(Attention(cur, u.num_heads))
                self.down.append(Block(*layers))
                skips.append(cur)
            if level < len(u.channel_mult) - 1:
                self.down.append(Block(Downsample(cur)))
                skips.append(cur)
        self.mid = Block(ResBlock(cur, cur, emb_dim, dropout=u.dropout),
                         Attention(cur, u.num_heads),
                         ResBlock(cur, cur, emb_dim, dropout=u.dropout))
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(u.channel_mult))):
            for i in range(u.num_res_blocks + 1):
                layers = [ResBlock(cur + skips.pop(), ch * mult, emb_dim, dropout=u.dropout)]
                cur = ch * mult
                if level in attn_levels:
                    layers.append(Attention(cur, u.num_heads))
                if level and i == u.num_res_blocks:
                    layers.append(Upsample(cur))
                self.up.append(Block(*layers))
        self.head = nn.Sequential(group_norm(cur), nn.SiLU(), nn.Conv2d(cur, out_ch, 3, padding=1))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, x, c_noise, cond=None, aug_level=None, labels=None):
        """``c_noise``: (B,) noise-level input in [0, 1000]; ``cond``: low-res image (B,C,h,w);
        ``aug_level``: (B,) augmentation level s in [0, 1]; ``labels``: (B,) long, -1 = none."""
        ch = self.cfg.unet.base_channels
        emb = self.noise_mlp(sinusoidal_embedding(c_noise, ch).to(x.dtype))
        if self.aug_mlp is not None:
            emb = emb + self.aug_mlp(sinusoidal_embedding(aug_level * 1000, ch).to(x.dtype))
            if cond.shape[-2:] != x.shape[-2:]:
                cond = F.interpolate(cond, size=x.shape[-2:], mode=self.cfg.upsample,
                                     **({} if self.cfg.upsample == "nearest"
                                        else {"align_corners": False}))
            x = torch.cat([x, cond.to(x.dtype)], dim=1)
        if self.class_emb is not None:
            if labels is None:
                labels = torch.full((x.shape[0],), -1, device=x.device, dtype=torch.long)
            classes = torch.where(labels < 0, self.cfg.num_classes, labels)
            emb = emb + self.class_emb(classes).to(emb.dtype)
        emb = emb.to(x.dtype)
        h, hs = self.stem(x), []
        hs.append(h)
        for block in self.down:
            h = block(h, emb)
            hs.append(h)
        h = self.mid(h, emb)
        for block in self.up:
            h = block(torch.cat([h, hs.pop()], dim=1), emb)
        return self.head(h)
