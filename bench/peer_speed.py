"""Our U-Net against diffusers' UNet2DModel of the same configuration, side by side.

    python -m bench.peer_speed            # the shipped stage sizes
    python -m bench.peer_speed --quick    # seconds; what CI runs

Prints both models' parameter and FLOP counts (so the match is visible), the
sampling throughput (one denoiser evaluation of a batch) and the training
throughput (forward, backward and AdamW step), as ratios ours/theirs, and the
fraction of this CPU's measured peak fp32 matmul throughput our sampler reaches.
diffusers is installed only for this benchmark (pip install diffusers); without
it the script says so and measures our model alone.
"""
from __future__ import annotations

import argparse
import sys

import torch

import cascade_core as cc

from .common import forward_flops, interleaved, peak_matmul_flops, save

SHIPPED = {  # name -> (stage config, batch for sampling, batch for training)
    "base16": (cc.StageConfig(role="base", resolution=16, num_classes=10,
                              unet=cc.UNetConfig(32, (1, 2, 2), 2, attention_resolutions=(8,),
                                                 num_heads=4)), 64, 64),
    "sr16to32": (cc.StageConfig(role="sr", resolution=32, low_res=16, num_classes=10,
                                unet=cc.UNetConfig(32, (1, 2, 2), 2, attention_resolutions=(),
                                                   num_heads=4)), 16, 64),
}
QUICK = {"base8": (cc.StageConfig(role="base", resolution=8, num_classes=10,
                                  unet=cc.UNetConfig(32, (1, 2), 1, attention_resolutions=(4,),
                                                     num_heads=4)), 4, 4)}


def diffusers_twin(cfg: cc.StageConfig):
    """A diffusers UNet2DModel with our block layout: same widths, blocks, attention levels, heads,
    scale-shift embedding, class embedding, conv down/nearest-conv up."""
    from diffusers import UNet2DModel

    u = cfg.unet
    levels = len(u.channel_mult)
    attn = [cfg.resolution // 2 ** i in u.attention_resolutions for i in range(levels)]
    widths = tuple(u.base_channels * m for m in u.channel_mult)
    return UNet2DModel(
        sample_size=cfg.resolution, in_channels=cfg.channels * (2 if cfg.conditioned else 1),
        out_channels=cfg.channels, block_out_channels=widths, layers_per_block=u.num_res_blocks,
        down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attn),
        up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)),
        attention_head_dim=widths[-1] // u.num_heads, norm_num_groups=min(32, u.base_channels),
        resnet_time_scale_shift="scale_shift", num_class_embeds=cfg.num_classes or None,
        downsample_type="conv", upsample_type="conv", dropout=u.dropout,
    )


def compare(name, cfg, batch_sample, batch_train, repeats):
    ours = cc.Stage(cfg).eval()
    x, t, y = torch.randn(batch_sample, 3, cfg.resolution,
                          cfg.resolution), torch.full((batch_sample,), 500.0), \
        torch.arange(batch_sample) % max(cfg.num_classes, 1)

    def ours_call(m, x, t, y):
        if not cfg.conditioned:
            return m(x, t, labels=y)
        return m(x, t, x[:, :, ::cfg.factor, ::cfg.factor], torch.zeros(len(x)), y)  # concat inside

    def theirs_call(m, x, t, y):
        if cfg.conditioned:  # the same bilinear upsampling and concatenation, done outside
            cond = torch.nn.functional.interpolate(x[:, :, ::cfg.factor, ::cfg.factor],
                                                   size=x.shape[-2:],
                                                   mode="bilinear", align_corners=False)
            x = torch.cat([x, cond], 1)
        return m(x, t, class_labels=y).sample

    models = {"ours": (ours, ours_call)}
    try:
        theirs = diffusers_twin(cfg).eval()
        models["diffusers"] = (theirs, theirs_call)
    except ImportError:
        print("diffusers is not installed: measuring our model alone (pip install diffusers to "
              "compare)")
    row = {"batch_sample": batch_sample, "batch_train": batch_train}
    for k, (m, call) in models.items():
        row[f"{k}_params"] = sum(p.numel() for p in m.parameters())
        flops = forward_flops(lambda m=m, call=call: call(m, x[:1], t[:1], y[:1]))
        row[f"{k}_gflops_per_image"] = flops / 1e9
    with torch.inference_mode():
        sample = interleaved({k: (lambda m=m, call=call: call(m, x, t, y)) for k,
                              (m, call) in models.items()},
                             repeats)
    copies = batch_train // batch_sample + 1
    xt = x.repeat(copies, 1, 1, 1)[:batch_train]
    tt, yt = t.repeat(copies)[:batch_train], y.repeat(copies)[:batch_train]
    opts = {k: torch.optim.AdamW(m.parameters(), 1e-4) for k, (m, _) in models.items()}

    def train_step(k):
        m, call = models[k]
        m.train()
        loss = (call(m, xt, tt, yt)[:, :3] - xt).pow(2).mean()
        opts[k].zero_grad(set_to_none=True)
        loss.backward()
        opts[k].step()

    train = interleaved({k: (lambda k=k: train_step(k)) for k in models}, repeats)
    for k in models:
        row[f"{k}_sample_images_per_s"] = batch_sample / sample[k]
        row[f"{k}_train_images_per_s"] = batch_train / train[k]
    if "diffusers" in models:
        for what in ("sample", "train"):
            ours, peer = row[f"ours_{what}_images_per_s"], row[f"diffusers_{what}_images_per_s"]
            row[f"{what}_speed_ratio"] = ours / peer
    return row


def _print_row(name: str, row: dict, peak: float):
    peer = "diffusers_params" in row
    print(f"{name}: params ours {row['ours_params']:,}"
          + (f" vs diffusers {row['diffusers_params']:,}" if peer else ""))
    print(f"  GFLOPs/image ours {row['ours_gflops_per_image']:.3f}"
          + (f" vs diffusers {row['diffusers_gflops_per_image']:.3f}" if peer else ""))
    for what, label in (("sample", "sampling"), ("train", "training")):
        print(f"  {label} {row[f'ours_{what}_images_per_s']:.1f} img/s"
              + (f" vs {row[f'diffusers_{what}_images_per_s']:.1f}: ratio "
                 f"{row[f'{what}_speed_ratio']:.2f}x" if f"{what}_speed_ratio" in row else ""))
    print(f"  our sampler reaches {row['ours_fraction_of_peak_matmul']:.1%} of the measured peak "
          f"matmul ({peak / 1e9:.1f} GFLOP/s)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.peer_speed", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a tiny configuration, seconds (CI)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    configs, repeats = (QUICK, 2) if args.quick else (SHIPPED, args.repeats)
    peak = peak_matmul_flops(512 if args.quick else 1024)
    rows = {}
    for name, (cfg, bs, bt) in configs.items():
        row = compare(name, cfg, batch_sample=bs, batch_train=bt, repeats=repeats)
        flops_per_s = row["ours_sample_images_per_s"] * row["ours_gflops_per_image"] * 1e9
        row["ours_fraction_of_peak_matmul"] = flops_per_s / peak
        rows[name] = row
        _print_row(name, row, peak)
    if not args.quick:
        save("peer_speed", {"peak_matmul_gflops": peak / 1e9, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
