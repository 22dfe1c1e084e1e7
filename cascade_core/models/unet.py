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
from .text import TextInput


def sinusoidal_embedding(x: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Transformer-style (cos, sin) features of the scalars ``x`` (B,) at ``dim // 2``
    geometrically spaced frequencies: how noise levels, ``s`` and sigmas enter the networks."""
    half = dim // 2
    steps = torch.arange(half, device=x.device, dtype=torch.float32)
    freqs = torch.exp(-math.log(max_period) * steps / half)
    args = x.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class GroupNorm32(nn.GroupNorm):
    """GroupNorm that normalises half-precision weights' activations in float32 (as ADM does):
    fp16 statistics over large groups lose too much. Float32 and autocast runs are unchanged
    (autocast already computes group_norm in float32)."""

    def forward(self, x):
        """Normalise ``x``; in float32 when ``x`` is half precision outside autocast."""
        if x.dtype == torch.float32 or torch.is_autocast_enabled(x.device.type):
            return super().forward(x)
        return F.group_norm(x.float(), self.num_groups, self.weight.float(), self.bias.float(),
                            self.eps).to(x.dtype)


def activation(name: str) -> nn.Module:
    """The network's nonlinearity: SiLU (ours, ADM) or exact GELU (IF)."""
    return nn.GELU() if name == "gelu" else nn.SiLU()


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 32 groups that divide ``channels`` (small test widths too)."""
    groups = math.gcd(32, channels)
    return GroupNorm32(groups, channels)


def resample(x: torch.Tensor, how: str | None) -> torch.Tensor:
    """Parameter-free resampling inside ADM's up/down residual blocks."""
    if how == "up":
        return F.interpolate(x, scale_factor=2, mode="nearest")
    if how == "down":
        return F.avg_pool2d(x, kernel_size=2, stride=2)
    return x


class ResBlock(nn.Module):
    """Residual block conditioned on the embedding: by scale-shift of the second normalisation
    (ADM's default) or, with ``scale_shift=False``, by adding it before that normalisation. With
    ``resample`` "up"/"down" it also changes the resolution (ADM's resblock up/down). The last
    convolution starts at zero, so a new block is the identity. The options of ``u`` (a
    UNetConfig) choose the nonlinearity, whether the block activates the embedding itself, and
    the factor its output is divided by (IF's scaled skip connections)."""

    def __init__(self, cin: int, cout: int, u, *, resample: str | None = None,
                 scale: float | None = None):
        super().__init__()
        self.scale_shift, self.resample = u.scale_shift, resample
        self.scale = u.resblock_scale if scale is None else scale
        self.act = activation(u.activation)
        self.emb_act = activation(u.activation) if u.block_embedding_act else nn.Identity()
        self.norm1, self.conv1 = group_norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(u.embedding_width, (2 if u.scale_shift else 1) * cout)
        self.norm2, self.drop = group_norm(cout), nn.Dropout(u.dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, emb, text=None):
        """``x`` (B, cin, H, W) and embedding ``emb`` (B, emb_dim) -> (B, cout, H', W')."""
        h = self.conv1(resample(self.act(self.norm1(x)), self.resample))
        x = resample(x, self.resample)
        e = rearrange(self.emb(self.emb_act(emb)), "b c -> b c 1 1")
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = self.norm2(h) * (1 + scale) + shift
        else:
            h = self.norm2(h + e)
        h = self.conv2(self.drop(self.act(h)))
        out = self.skip(x) + h
        return out if self.scale == 1.0 else out / self.scale


# how the qkv projection's channels split: ours (and ADM's new order) is q|k|v, each split into
# heads; ADM's legacy order is per head, q|k|v within each head (same shapes, other weights). The
# text's keys and values split the same way: k|v (new) or per head (legacy, IF's release).
QKV_LAYOUTS = {"new": "b s (three n d) -> three b n s d",
               "legacy": "b s (n three d) -> three b n s d"}


def split_heads(projected: torch.Tensor, parts: int, *, heads: int, order: str) -> torch.Tensor:
    """(B, S, parts * C) projections as (parts, B, heads, S, C // heads) in ``order``'s layout,
    contiguous along the head dimension (a strided last dimension makes SDPA fall back to its
    unfused math path, 2-3x slower on a CPU at 1,024 positions: bench/RESULTS.md, section 10)."""
    pattern = QKV_LAYOUTS[order].replace("three", "parts")
    return rearrange(projected.contiguous(), pattern, parts=parts, n=heads)


def attend(qkv: torch.Tensor, heads: int, order: str) -> torch.Tensor:
    """Multi-head self-attention of a (B, 3C, S) qkv tensor through the fused SDPA kernel: (B, C,
    S)."""
    q, k, v = split_heads(rearrange(qkv, "b c s -> b s c"), 3, heads=heads, order=order)
    return rearrange(F.scaled_dot_product_attention(q, k, v), "b n s d -> b (n d) s")


class Attention(nn.Module):
    """Multi-head attention over all positions; a residual that starts at zero.

    With ``text_channels`` the text's keys and values (from its group-normalised tokens) join the
    image's, ahead of them, as IF's blocks do; with ``self_attention`` False the image's queries
    attend to the text alone."""

    def __init__(self, channels: int, heads: int, order: str = "new", *, text_channels: int = 0,
                 self_attention: bool = True):
        super().__init__()
        self.heads, self.order, self.self_attention = heads, order, self_attention
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, (3 if self_attention else 1) * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        if text_channels:
            self.text_norm = group_norm(text_channels)
            self.text_kv = nn.Linear(text_channels, 2 * channels)

    def forward(self, x, emb=None, text=None):
        """``x`` plus attention over its ``H * W`` positions (and the text's tokens, (B, L,
        text_channels), where the block takes text); ``emb`` is unused."""
        h, w = x.shape[-2:]
        qkv = rearrange(self.qkv(self.norm(x)), "b c h w -> b c (h w)")
        if text is None or not hasattr(self, "text_kv"):
            o = attend(qkv, self.heads, self.order)
        else:
            o = self._with_text(rearrange(qkv, "b c s -> b s c"), text)
        return x + self.out(rearrange(o, "b c (h w) -> b c h w", h=h, w=w))

    def _with_text(self, qkv: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        tokens = self.text_norm(text.transpose(1, 2).to(qkv.dtype)).transpose(1, 2)
        tk, tv = split_heads(self.text_kv(tokens), 2, heads=self.heads, order=self.order)
        if self.self_attention:
            q, k, v = split_heads(qkv, 3, heads=self.heads, order=self.order)
            k, v = torch.cat([tk, k], dim=2), torch.cat([tv, v], dim=2)
        else:
            q, k, v = split_heads(qkv, 1, heads=self.heads, order=self.order)[0], tk, tv
        return rearrange(F.scaled_dot_product_attention(q, k, v), "b n s d -> b (n d) s")


class Downsample(nn.Module):
    """Strided 3x3 convolution: halves the resolution."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x, emb=None, text=None):
        """Half-resolution ``x`` (``emb`` is unused)."""
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour doubling, then a 3x3 convolution."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x, emb=None, text=None):
        """Double-resolution ``x`` (``emb`` is unused)."""
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class Block(nn.Sequential):
    """A ResBlock optionally followed by attention; every layer gets the embedding and the text
    (each uses what it needs)."""

    def forward(self, x, emb, text=None):
        """Run each layer with the same embedding and text."""
        for layer in self:
            x = layer(x, emb, text)
        return x


def embedding_mlp(ch: int, emb_dim: int, act: str = "silu") -> nn.Sequential:
    """Sinusoidal features (``ch``) -> the blocks' embedding (``emb_dim``): ADM's time_embed."""
    return nn.Sequential(nn.Linear(ch, emb_dim), activation(act), nn.Linear(emb_dim, emb_dim))


class Encoder(nn.Module):
    """The U-Net's downward half and middle: a stem convolution; per level ``num_res_blocks``
    residual blocks (attention at the listed feature-map sizes) and a downsampling; a middle of
    block-attention-block. The U-Net and the noisy classifier (``classifier.NoisyClassifier``)
    are both Encoders: one copy of this code, the same parameter names (``stem``, ``down``,
    ``mid``). ``skips`` lists the widths the decoder takes back."""

    def build_encoder(self, u, resolution: int, in_ch: int):
        """Create ``stem``, ``down`` and ``mid`` for a U-Net shape ``u`` at ``resolution``."""
        widths = u.widths
        self.resolution = resolution
        self.attn_levels = {i for i in range(len(widths))
                            if resolution // 2 ** i in u.attention_resolutions}
        cur = widths[0]
        self.stem = nn.Conv2d(in_ch, cur, 3, padding=1)
        self.down, self.skips = nn.ModuleList(), [cur]
        for level, width in enumerate(widths):
            for _ in range(u.level_blocks[level]):
                self.down.append(level_block(u, cur, width, attention=self._attention(u, level)))
                cur = width
                self.skips.append(cur)
            if level < len(widths) - 1:
                self.down.append(Block(ResBlock(cur, cur, u, resample="down")
                                       if u.resblock_updown else Downsample(cur)))
                self.skips.append(cur)
        mid_attention = self._attention(u, len(widths) - 1, always=True)
        self.mid = Block(ResBlock(cur, cur, u, scale=u.mid_resblock_scale),
                         attention_layer(u, cur, mid_attention),
                         ResBlock(cur, cur, u, scale=u.mid_resblock_scale))
        self.out_channels = cur

    def _attention(self, u, level: int, always: bool = False) -> str | None:
        """At ``level``: None (no attention), "self" or "text only" (IF's
        disable_self_attentions)."""
        size = self.resolution // 2 ** level
        if not always and level not in self.attn_levels:
            return None
        return "text only" if size in u.text_only_resolutions else "self"

    def encode(self, x, emb, text=None):
        """(middle features, every skip activation in order)."""
        h = self.stem(x)
        hs = [h]
        for block in self.down:
            h = block(h, emb, text)
            hs.append(h)
        return self.mid(h, emb, text), hs


def attention_layer(u, channels: int, kind: str) -> Attention:
    """An attention layer of width ``channels``: with the text's keys and values where the
    U-Net takes text, attending to the text alone for ``kind`` "text only"."""
    return Attention(channels, u.heads(channels), u.qkv_order, text_channels=u.text_channels,
                     self_attention=kind != "text only")


def level_block(u, cin: int, cout: int, *, attention: str | None,
                upsample: bool = False) -> Block:
    """One residual block of a level, with attention if the level has it, and an upsampling
    (a convolution or an up-resblock) at the end of an upward level."""
    layers = [ResBlock(cin, cout, u)]
    if attention:
        layers.append(attention_layer(u, cout, attention))
    if upsample:
        layers.append(ResBlock(cout, cout, u, resample="up") if u.resblock_updown
                      else Upsample(cout))
    return Block(*layers)


class UNet(Encoder):
    """The denoising network of every diffusion stage (base, SR and refiner).

    The layout follows ADM: the ``Encoder`` (stem, levels of residual blocks with attention at
    the sizes listed in ``attention_resolutions``, downsampling, a middle of
    block-attention-block); the mirror image upwards with one extra block per level, each taking
    the skip connection of its partner; a zero-initialised head. Why it is built this way:

    * one embedding of width ``4 * base_channels`` carries everything the
      blocks condition on: the noise level, plus the augmentation level ``s``
      (SR and refiner stages, CDM section 3: the model must know how noisy its
      conditioning is) and the class (with one extra "null" row for
      classifier-free guidance and unconditional sampling, unless ``null_class`` is off);
    * conditioned stages concatenate the upsampled low-res image with ``x_t``
      at the input (SR3 / CDM), so the stem takes twice the channels;
    * stages that learn their variance output twice the channels (eps or v,
      then the log-variance interpolation of improved DDPM).

    The options of ``UNetConfig`` beyond this pack's defaults (fractional multipliers, head
    channels, legacy QKV order, resblock up/down, additive embedding) and the config's
    ``null_class``/``aug_input`` exist so that released ADM files load into this same network;
    its text options (``models.text``: the projected text in every attention layer, the pooled
    text in the embedding, GELU, scaled residuals) so that DeepFloyd IF's stages do.
    """

    def __init__(self, cfg: StageConfig):
        super().__init__()
        u, ch = cfg.unet, cfg.unet.base_channels
        self.cfg = cfg
        emb_dim = self.emb_dim = u.embedding_width
        self.noise_mlp = embedding_mlp(ch, emb_dim, u.activation)
        self.aug_mlp = (embedding_mlp(ch, emb_dim, u.activation)
                        if cfg.conditioned and cfg.aug_input else None)
        rows = cfg.num_classes + (1 if cfg.null_class else 0)
        self.class_emb = nn.Embedding(rows, emb_dim) if cfg.num_classes else None
        self.text = TextInput(cfg.text.width, u, emb_dim) if u.text_channels else None
        self.emb_act = activation(u.activation) if u.embedding_act else nn.Identity()
        in_ch = cfg.channels * (2 if cfg.conditioned else 1)
        out_ch = cfg.channels * (2 if cfg.learn_sigma else 1)
        self.build_encoder(u, cfg.resolution, in_ch=in_ch)
        skips, cur = list(self.skips), self.out_channels
        self.up = nn.ModuleList()
        for level, width in reversed(list(enumerate(u.widths))):
            blocks = u.level_blocks[level]
            for i in range(blocks + 1):
                self.up.append(level_block(u, cur + skips.pop(), width,
                                           attention=self._attention(u, level),
                                           upsample=bool(level) and i == blocks))
                cur = width
        self.head = nn.Sequential(group_norm(cur), activation(u.activation),
                                  nn.Conv2d(cur, out_ch, 3, padding=1))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def embed(self, x, c_noise, *, aug_level, labels, pooled=None) -> torch.Tensor:
        """The blocks' embedding: noise level, plus ``s``, the class and the pooled text where the
        stage has them."""
        ch = self.cfg.unet.base_channels
        emb = self.noise_mlp(sinusoidal_embedding(c_noise, ch).to(x.dtype))
        if self.aug_mlp is not None:
            emb = emb + self.aug_mlp(sinusoidal_embedding(aug_level * 1000, ch).to(x.dtype))
        if self.class_emb is not None:
            if labels is None:
                labels = torch.full((x.shape[0],), -1, device=x.device, dtype=torch.long)
            classes = torch.where(labels < 0, self.cfg.num_classes, labels)
            emb = emb + self.class_emb(classes).to(emb.dtype)
        if pooled is not None:
            emb = emb + pooled.to(emb.dtype)
        return self.emb_act(emb).to(x.dtype)

    def upsample_cond(self, cond: torch.Tensor, size) -> torch.Tensor:
        """The low-res conditioning brought to ``size`` the way this stage was trained."""
        if tuple(cond.shape[-2:]) == tuple(size):
            return cond
        return F.interpolate(cond, size=tuple(size), mode=self.cfg.upsample,
                             **({} if self.cfg.upsample == "nearest" else {"align_corners": False}))

    def forward(self, x, c_noise, cond=None, aug_level=None, labels=None, text=None):
        """``c_noise``: (B,) noise-level input in [0, 1000]; ``cond``: low-res image (B,C,h,w);
        ``aug_level``: (B,) augmentation level s in [0, 1]; ``labels``: (B,) long, -1 = none;
        ``text``: (B, L, text width) token embeddings, for a stage that takes text."""
        tokens = pooled = None
        if self.text is not None:
            if isinstance(text, torch.Tensor) and text.is_floating_point():
                text = text.to(x.dtype)  # an fp32 encoder's output into a bf16 or fp16 stage
            tokens, pooled = self.text(text, self.cfg.text.width, batch=x.shape[0])
        emb = self.embed(x, c_noise, aug_level=aug_level, labels=labels, pooled=pooled)
        if self.cfg.conditioned:
            x = torch.cat([x, self.upsample_cond(cond, x.shape[-2:]).to(x.dtype)], dim=1)
        h, hs = self.encode(x, emb, tokens)
        for block in self.up:
            h = block(torch.cat([h, hs.pop()], dim=1), emb, tokens)
        return self.head(h)
