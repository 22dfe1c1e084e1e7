"""The non-diffusion networks of the shallow-cascade recipe, behind the same Stage.

* ``dae`` (base): a denoising autoencoder D(x + sigma n, sigma, class) -> x,
  sampled by a short chain of denoise / re-noise passes from sigma_max down;
* ``pixelshuffle`` and ``resnet`` (sr): one-pass upsamplers (sub-pixel
  convolution after residual blocks, or residual blocks after a bilinear
  upsampling), both predicting a residual over the bilinear upsampled input;
* ``conv`` and ``vit`` (refiner): one-pass refiners predicting a residual over
  their input, with local (residual convolutions) or global (a Vision
  Transformer over patches) receptive field.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .config import StageConfig, UNetConfig
from .unet import ResBlock, group_norm, sinusoidal_embedding


class PlainBlock(nn.Module):
    """Residual block without an embedding: norm, SiLU, conv, twice."""

    def __init__(self, ch: int):
        super().__init__()
        self.body = nn.Sequential(group_norm(ch), nn.SiLU(), nn.Conv2d(ch, ch, 3, padding=1),
                                  group_norm(ch), nn.SiLU(), nn.Conv2d(ch, ch, 3, padding=1))
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, x):
        """``x`` plus the block's residual."""
        return x + self.body(x)


def _head(ch: int, out: int) -> nn.Module:
    head = nn.Conv2d(ch, out, 3, padding=1)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    return nn.Sequential(group_norm(ch), nn.SiLU(), head)


def _residual_body(cfg: StageConfig) -> nn.Sequential:
    """Conv in, residual blocks, zero-initialised conv out: a residual over whatever it is given."""
    h = cfg.shallow.hidden
    return nn.Sequential(nn.Conv2d(cfg.channels, h, 3, padding=1),
                         *[PlainBlock(h) for _ in range(cfg.shallow.blocks)],
                         _head(h, cfg.channels))


class DenoisingAutoencoder(nn.Module):
    """The shallow recipe's DAE base stage: residual blocks conditioned on sigma and class."""

    def __init__(self, cfg: StageConfig):
        super().__init__()
        h = cfg.shallow.hidden
        self.cfg, self.emb_dim = cfg, 4 * h
        self.sigma_mlp = nn.Sequential(nn.Linear(h, 4 * h), nn.SiLU(), nn.Linear(4 * h, 4 * h))
        self.class_emb = nn.Embedding(cfg.num_classes + 1, 4 * h) if cfg.num_classes else None
        self.stem = nn.Conv2d(cfg.channels, h, 3, padding=1)
        block = UNetConfig(base_channels=h, dropout=0.0)  # SiLU, scale-shift, 4h embedding
        self.blocks = nn.ModuleList(ResBlock(h, h, block) for _ in range(cfg.shallow.blocks))
        self.head = _head(h, cfg.channels)

    def forward(self, x, sigma, labels=None):
        """Clean-image estimate of ``x`` (noisy at ``sigma``, (B,)); a residual over ``x``."""
        features = sinusoidal_embedding(sigma * 1000, self.cfg.shallow.hidden)
        emb = self.sigma_mlp(features.to(x.dtype))
        if self.class_emb is not None:
            if labels is None:
                labels = torch.full((x.shape[0],), -1, device=x.device)
            classes = torch.where(labels < 0, self.cfg.num_classes, labels)
            emb = emb + self.class_emb(classes).to(emb.dtype)
        h = self.stem(x)
        for block in self.blocks:
            h = block(h, emb)
        return x + self.head(h)


class PixelShuffleUpsampler(nn.Module):
    """Residual blocks at low resolution, then a sub-pixel convolution; a residual over the
    bilinear upsampling."""

    def __init__(self, cfg: StageConfig):
        super().__init__()
        h, f = cfg.shallow.hidden, cfg.factor
        self.cfg = cfg
        self.body = nn.Sequential(nn.Conv2d(cfg.channels, h, 3, padding=1),
                                  *[PlainBlock(h) for _ in range(cfg.shallow.blocks)],
                                  group_norm(h), nn.SiLU(),
                                  nn.Conv2d(h, cfg.channels * f * f, 3, padding=1),
                                  nn.PixelShuffle(f))
        nn.init.zeros_(self.body[-2].weight)
        nn.init.zeros_(self.body[-2].bias)

    def forward(self, low):
        """The ``factor x`` image of ``low``."""
        up = F.interpolate(low, scale_factor=self.cfg.factor, mode="bilinear", align_corners=False)
        return up + self.body(low)


class ResNetUpsampler(nn.Module):
    """Bilinear upsampling, then residual blocks at full resolution."""

    def __init__(self, cfg: StageConfig):
        super().__init__()
        self.cfg = cfg
        self.body = _residual_body(cfg)

    def forward(self, low):
        """The ``factor x`` image of ``low``."""
        up = F.interpolate(low, scale_factor=self.cfg.factor, mode="bilinear", align_corners=False)
        return up + self.body(up)


class ConvRefiner(nn.Module):
    """Residual convolutions at the image's size: a local refiner."""

    def __init__(self, cfg: StageConfig):
        super().__init__()
        self.body = _residual_body(cfg)

    def forward(self, x):
        """The refined ``x``."""
        return x + self.body(x)


class ViTRefiner(nn.Module):
    """Patches -> transformer encoder (global self-attention) -> patches, as a residual."""

    def __init__(self, cfg: StageConfig):
        super().__init__()
        s, p = cfg.shallow, cfg.shallow.patch
        self.cfg, self.grid = cfg, cfg.resolution // p
        self.embed = nn.Conv2d(cfg.channels, s.hidden, p, stride=p)
        self.pos = nn.Parameter(torch.zeros(1, s.hidden, self.grid, self.grid))
        nn.init.normal_(self.pos, std=0.02)
        layer = nn.TransformerEncoderLayer(s.hidden, s.heads, 4 * s.hidden, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, s.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(s.hidden)
        self.out = nn.Linear(s.hidden, cfg.channels * p * p)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x):
        """The refined ``x``; other sizes than the trained one interpolate the positions."""
        p = self.cfg.shallow.patch
        tokens = self.embed(x)
        h, w = tokens.shape[-2:]
        pos = self.pos if (h, w) == (self.grid, self.grid) else F.interpolate(
            self.pos, size=(h, w), mode="bicubic",
            align_corners=False)  # other sizes: interpolated positions
        seq = rearrange(tokens + pos, "b c h w -> b (h w) c")
        delta = self.out(self.norm(self.encoder(seq)))
        return x + rearrange(delta, "b (h w) (c p q) -> b c (h p) (w q)", h=h, w=w, p=p, q=p)


MODELS = {"dae": DenoisingAutoencoder, "pixelshuffle": PixelShuffleUpsampler,
          "resnet": ResNetUpsampler, "conv": ConvRefiner, "vit": ViTRefiner}
