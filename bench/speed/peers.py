"""The contenders of the speed tables, built at the same configuration: our U-Net, diffusers'
``UNet2DModel``, and (given the path of a clone) guided-diffusion's own U-Net.

Each builder returns ``(model, call)`` where ``call(model, inputs)`` runs one denoiser
evaluation of a batch of ``Inputs`` (``low``: the low-resolution conditioning of an SR stage,
else None), so the timing code treats them alike. diffusers and guided-diffusion are imported
only here and only by the benchmarks; the pack never depends on them.
"""
from __future__ import annotations

import sys
from typing import NamedTuple

import torch
import torch.nn.functional as F

import cascade_core as cc

# the released ADM shapes (random weights): 64 px base (ADM-G) and 64->256 (ADM-U)
ADM = {
    "adm64": cc.StageConfig(role="base", resolution=64, num_classes=1000, learn_sigma=True,
                            null_class=False, noise_conditioning="timestep_raw",
                            unet=cc.UNetConfig(192, (1, 2, 3, 4), 3,
                                               attention_resolutions=(32, 16, 8),
                                               num_head_channels=64, resblock_updown=True,
                                               scale_shift=True)),
    "adm64to256": cc.StageConfig(role="sr", resolution=256, low_res=64, num_classes=1000,
                                 learn_sigma=True, null_class=False, aug_input=False,
                                 noise_conditioning="timestep_raw",
                                 unet=cc.UNetConfig(192, (1, 1, 2, 2, 4, 4), 2,
                                                    attention_resolutions=(32, 16, 8),
                                                    num_heads=4, resblock_updown=True,
                                                    scale_shift=True)),
}
GUIDED_ARGS = {  # script_util keyword arguments of the same two models
    "adm64": dict(image_size=64, num_channels=192, num_res_blocks=3, class_cond=True,
                  attention_resolutions="32,16,8", num_heads=4, num_head_channels=64,
                  use_new_attention_order=True),
    "adm64to256": dict(large_size=256, small_size=64, num_channels=192, num_res_blocks=2,
                       class_cond=True, attention_resolutions="32,16,8", num_heads=4,
                       num_head_channels=-1),
}


def ours(cfg: cc.StageConfig):
    model = cc.Stage(cfg).eval()

    def call(m, inp):
        x, t, y, low = inp
        return m(x, t, cond=low, aug_level=None if low is None else torch.zeros(len(x)),
                 labels=y)
    return model, call


def diffusers_unet(cfg: cc.StageConfig):
    """diffusers' UNet2DModel with our block layout: widths, blocks, attention levels, head
    width, scale-shift, class embedding, resblock or conv resampling."""
    from diffusers import UNet2DModel

    u = cfg.unet
    levels = len(u.channel_mult)
    attn = [cfg.resolution // 2 ** i in u.attention_resolutions for i in range(levels)]
    widths = tuple(int(u.base_channels * m) for m in u.channel_mult)
    head_dim = u.num_head_channels if u.num_head_channels > 0 else widths[-1] // u.num_heads
    resample = "resnet" if u.resblock_updown else "conv"
    plain = (("ResnetDownsampleBlock2D", "ResnetUpsampleBlock2D") if u.resblock_updown
             else ("DownBlock2D", "UpBlock2D"))
    model = UNet2DModel(
        sample_size=cfg.resolution, in_channels=cfg.channels * (2 if cfg.conditioned else 1),
        out_channels=cfg.channels * (2 if cfg.learn_sigma else 1), block_out_channels=widths,
        layers_per_block=u.num_res_blocks, attention_head_dim=head_dim,
        down_block_types=tuple("AttnDownBlock2D" if a else plain[0] for a in attn),
        up_block_types=tuple("AttnUpBlock2D" if a else plain[1] for a in reversed(attn)),
        norm_num_groups=min(32, u.base_channels), resnet_time_scale_shift="scale_shift",
        num_class_embeds=cfg.num_classes or None, downsample_type=resample,
        upsample_type=resample, dropout=u.dropout).eval()

    def call(m, inp):
        x, t, y, low = inp
        if low is not None:  # the same bilinear upsampling and concatenation, done outside
            x = torch.cat([x, F.interpolate(low, size=x.shape[-2:], mode="bilinear",
                                            align_corners=False)], 1)
        return m(x, t, class_labels=y).sample
    return model, call


def guided_unet(name: str, path: str):
    """guided-diffusion's own U-Net (from a clone at ``path``) for one of the ADM shapes."""
    if path not in sys.path:
        sys.path.insert(0, path)
    from guided_diffusion import script_util as gs

    common = dict(learn_sigma=True, use_checkpoint=False, use_fp16=False, dropout=0.0,
                  num_heads_upsample=-1, use_scale_shift_norm=True, resblock_updown=True)
    args = GUIDED_ARGS[name]
    model = (gs.create_model(channel_mult="", **common, **args) if name == "adm64"
             else gs.sr_create_model(**common, **args)).eval()

    def call(m, inp):
        x, t, y, low = inp
        return m(x, t, y=y) if low is None else m(x, t, low_res=low, y=y)
    return model, call


class Inputs(NamedTuple):
    x: torch.Tensor
    t: torch.Tensor
    y: torch.Tensor | None
    low: torch.Tensor | None


def inputs(cfg: cc.StageConfig, batch: int) -> Inputs:
    """The inputs of one evaluation at ``batch``; the same tensors for every contender."""
    g = torch.Generator().manual_seed(batch)
    x = torch.randn(batch, 3, cfg.resolution, cfg.resolution, generator=g)
    low = (torch.randn(batch, 3, cfg.low_res, cfg.low_res, generator=g)
           if cfg.role == "sr" else None)
    y = torch.arange(batch) % cfg.num_classes if cfg.num_classes else None
    return Inputs(x, torch.full((batch,), 500.0), y, low)


def to_channels_last(model):
    return model.to(memory_format=torch.channels_last)
