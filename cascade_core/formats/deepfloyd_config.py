"""DeepFloyd IF's stage configs, in both released layouts, as StageConfigs of the one U-Net.

IF's stages come as a diffusers folder (``unet/config.json``, the
``UNet2DConditionModel`` options) or as the original release (``config.yml``,
the ``params`` of deep-floyd/IF's ``UNetModel``). Either says everything about
the network; nothing is read from file names. What the configs do not say is
the same for every released IF stage: the cosine (``squaredcos_cap_v2``)
schedule of 1,000 steps, eps prediction with learned variance, T5-v1.1-XXL
text of 77 tokens, and stage II's x4 factor (64 → 256 px). A config option
this pack does not implement is refused by name, never ignored.
"""

from __future__ import annotations

from ..base.errors import CheckpointError
from ..models.config import AugmentConfig, StageConfig, TextConfig, UNetConfig
from ..process.schedules import ScheduleConfig

TEXT = TextConfig(width=4096, encoder="t5-v1_1-xxl", max_tokens=77)
SCHEDULE = ScheduleConfig("cosine", 1000)
SR_FACTOR = 4  # IF stage II: 64 -> 256 px
# stage II noises its input after upsampling it, at an integer step of the discrete cosine
# schedule, and is told that step (noise_level, 250 by default); as our s it is that step / 1000
NOISE_LEVEL_AUGMENT = AugmentConfig(schedule="if_steps", apply="upsampled", s_max=1.0,
                                    default_s=0.25)
# IF's pipelines threshold every clean-image estimate dynamically (percentile 0.95) up to these
THRESHOLDS = {"base": 1.5, "sr": 1.0}
SOURCE = "DeepFloyd IF"


def default_threshold(cfg) -> float:
    """The dynamic-thresholding scale a stage is sampled with by default: IF's for IF's stages
    (1.5 stage I, 1.0 stage II), 0 (the plain clamp) for every other stage."""
    if str(cfg.training.get("source", "")).startswith(SOURCE):
        return THRESHOLDS.get(cfg.role, 0.0)
    return 0.0


DOWN_TYPES = {
    "ResnetDownsampleBlock2D": (True, False),
    "SimpleCrossAttnDownBlock2D": (True, True),
    "DownBlock2D": (False, False),
}  # -> (resample in a residual block, attention)
UP_TYPES = {
    "ResnetUpsampleBlock2D": (True, False),
    "SimpleCrossAttnUpBlock2D": (True, True),
    "UpBlock2D": (False, False),
}
# diffusers options that must have these values (anything else is another architecture)
REQUIRED = {
    "_class_name": "UNet2DConditionModel",
    "mid_block_type": "UNetMidBlock2DSimpleCrossAttn",
    "time_embedding_type": "positional",
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "conv_in_kernel": 3,
    "conv_out_kernel": 3,
    "norm_num_groups": 32,
    "cross_attention_norm": "group_norm",
    "class_embeddings_concat": False,
    "center_input_sample": False,
    "dual_cross_attention": False,
    "encoder_hid_dim_type": "text_proj",
    "addition_embed_type": "text",
}


def _refuse(name: str, what: str, *, expected, found):
    raise CheckpointError(f"{name}: {what}", expected, found)


def _stage(
    name: str,
    *,
    image_channels: int,
    in_channels: int,
    resolution: int,
    unet,
    text,
    aug: bool,
    learn_sigma: bool,
) -> StageConfig:
    """The StageConfig of an IF stage: a base stage (3 input channels) or stage II (6)."""
    if in_channels not in (image_channels, 2 * image_channels):
        _refuse(
            name,
            "input channels are neither an image nor an image with its low-res copy",
            expected=f"{image_channels} or {2 * image_channels}",
            found=in_channels,
        )
    sr = in_channels == 2 * image_channels
    return StageConfig(
        role="sr" if sr else "base",
        resolution=resolution,
        low_res=resolution // SR_FACTOR if sr else 0,
        channels=image_channels,
        unet=unet,
        schedule=SCHEDULE,
        parameterization="eps",
        learn_sigma=learn_sigma,
        noise_conditioning="timestep",
        num_classes=0,
        aug_input=sr and aug,
        augmentation=NOISE_LEVEL_AUGMENT if sr else AugmentConfig(),
        text=text,
        training={"name": name, "source": f"{SOURCE} (DeepFloyd IF licence, non-commercial)"},
    )


def _resolutions(resolution: int, levels: list, flags: list) -> tuple:
    """The feature-map sizes of the levels whose flag is set."""
    return tuple(resolution // 2**i for i, on in zip(levels, flags) if on)


def _check_diffusers(config: dict, name: str) -> list:
    """Refuse what this pack does not implement, by name; the down block types when it does."""
    for key, want in REQUIRED.items():
        if config.get(key, want) != want:
            _refuse(name, f"config option {key} = {config.get(key)!r} is not supported",
                    expected=repr(want), found=repr(config.get(key)))
    down = list(config.get("down_block_types", ()))
    unknown = [t for t in down + list(config.get("up_block_types", ()))
               if t not in DOWN_TYPES and t not in UP_TYPES]
    if unknown:
        _refuse(name, f"block type {unknown[0]} is not supported",
                expected=f"one of {sorted(DOWN_TYPES) + sorted(UP_TYPES)}", found=unknown[0])
    expected_up = [t.replace("Down", "Up") for t in reversed(down)]
    if list(config.get("up_block_types", expected_up)) != expected_up:
        _refuse(name, "up blocks that do not mirror the down blocks", expected=expected_up,
                found=config.get("up_block_types"))
    if len({DOWN_TYPES[t][0] for t in down}) != 1:
        _refuse(name, "a mix of residual-block and convolution resampling", expected="one kind",
                found=down)
    return down


def from_diffusers(config: dict, name: str) -> StageConfig:
    """The StageConfig of a diffusers ``UNet2DConditionModel`` config of an IF stage."""
    down = _check_diffusers(config, name)
    widths = list(config["block_out_channels"])
    unet = _diffusers_unet(config, name, down=down, widths=widths)
    size = int(config.get("sample_size", 64))
    act, step_act = config.get("act_fn", "silu"), config.get("time_embedding_act_fn")
    if step_act not in (None, act):
        _refuse(name, "time_embedding_act_fn differs from act_fn", expected=act, found=step_act)
    text = TextConfig(
        width=int(config.get("encoder_hid_dim") or config["cross_attention_dim"]),
        encoder=TEXT.encoder,
        max_tokens=TEXT.max_tokens,
    )
    class_embed = config.get("class_embed_type")
    if class_embed not in (None, "timestep"):
        _refuse(
            name,
            f"class_embed_type {class_embed!r} is not supported",
            expected="None or 'timestep'",
            found=class_embed,
        )
    out = int(config.get("out_channels", 6))
    return _stage(
        name,
        image_channels=3,
        in_channels=int(config.get("in_channels", 3)),
        resolution=size,
        unet=unet,
        text=text,
        aug=class_embed == "timestep",
        learn_sigma=out == 6,
    )


def _diffusers_unet(config: dict, name: str, *, down: list, widths: list) -> UNetConfig:
    size = int(config.get("sample_size", 64))
    levels = list(range(len(down)))
    only = config.get("only_cross_attention", False)
    only = [bool(only)] * len(down) if isinstance(only, bool) else [bool(v) for v in only]
    mid_only = config.get("mid_block_only_cross_attention")
    mid_only = (only[-1] if len(set(only)) == 1 else False) if mid_only is None else mid_only
    if mid_only != only[-1]:
        _refuse(
            name,
            "text-only attention in the middle block but not at the lowest level (or "
            "the reverse) is not supported",
            expected=f"mid_block_only_cross_attention = {only[-1]}",
            found=mid_only,
        )
    attention = [DOWN_TYPES[t][1] for t in down]
    act = config.get("act_fn", "silu")
    return UNetConfig(
        base_channels=widths[0],
        channel_mult=tuple(w / widths[0] for w in widths),
        num_res_blocks=config.get("layers_per_block", 2),
        attention_resolutions=_resolutions(size, levels, attention),
        num_head_channels=int(config.get("attention_head_dim") or 8),
        qkv_order="new",
        resblock_updown=DOWN_TYPES[down[0]][0],
        scale_shift=config.get("resnet_time_scale_shift", "default") == "scale_shift",
        dropout=float(config.get("dropout", 0.0)),
        activation=act,
        embedding_channels=int(config.get("time_embedding_dim") or 4 * widths[0]),
        block_embedding_act=not config.get("resnet_skip_time_act", False),
        embedding_act=config.get("time_embedding_act_fn") is not None,
        resblock_scale=float(config.get("resnet_out_scale_factor", 1.0)),
        mid_resblock_scale=float(config.get("mid_block_scale_factor", 1.0)),
        text_channels=int(config["cross_attention_dim"]),
        text_pool_heads=int(config.get("addition_embed_type_num_heads", 64)),
        text_only_resolutions=_resolutions(
            size, levels, [o and a for o, a in zip(only, attention)]
        ),
    )


def _numbers(value, name: str, field: str) -> list:
    """A release config's list: "1,2,3,4", [1, 2, 3, 4] or a single number."""
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    elif isinstance(value, (int, float)):
        value = [value]
    try:
        return [int(v) for v in value]
    except (TypeError, ValueError):
        _refuse(
            name,
            f"config.yml {field} is not a list of numbers",
            expected="e.g. 1,2,3,4",
            found=value,
        )


def from_release(params: dict, name: str) -> StageConfig:
    """The StageConfig of an original IF release's ``config.yml`` ``params``."""
    for key in ("num_classes", "use_linear_in_transformer"):
        if params.get(key) not in (None, False):
            _refuse(
                name, f"config option {key} is not supported", expected="absent", found=params[key]
            )
    if params.get("num_heads_upsample", -1) not in (-1, params.get("num_heads", 1)):
        _refuse(
            name,
            "config option num_heads_upsample is not supported",
            expected="-1",
            found=params["num_heads_upsample"],
        )
    size, ch = int(params["image_size"]), int(params["model_channels"])
    mult = _numbers(params["channel_mult"], name, "channel_mult")
    attention = tuple(_numbers(params["attention_resolutions"], name, "attention_resolutions"))
    text_only = params.get("disable_self_attentions") or ()
    # the reference turns `true` with a string attention_resolutions into a tuple of characters,
    # so no level ends up text-only; a string lists the sizes as attention_resolutions does
    text_only = (
        () if text_only is True else tuple(_numbers(text_only, name, "disable_self_attentions"))
    )
    efficient = bool(params.get("efficient_activation", False))
    scaled = 1 / 0.7071 if params.get("scale_skip_connection", False) else 1.0
    blocks = params.get("num_res_blocks", 2)
    unet = UNetConfig(
        base_channels=ch,
        channel_mult=tuple(mult),
        num_res_blocks=blocks if isinstance(blocks, int) else tuple(blocks),
        attention_resolutions=attention,
        num_heads=int(params.get("num_heads", 1)),
        num_head_channels=max(0, int(params.get("num_head_channels", -1))),
        qkv_order="legacy",
        resblock_updown=bool(params.get("resblock_updown", False)),
        scale_shift=bool(params.get("use_scale_shift_norm", False)),
        dropout=float(params.get("dropout", 0.0)),
        activation=params.get("activation", "silu"),
        embedding_channels=ch * max(mult),
        block_embedding_act=not efficient,
        embedding_act=efficient,
        resblock_scale=scaled,
        mid_resblock_scale=scaled,
        text_channels=int(params["encoder_channels"]),
        text_pool_heads=int(params["att_pool_heads"]),
        text_only_resolutions=text_only,
    )
    width = int(params["encoder_dim"])
    text = TextConfig(width=width, encoder=TEXT.encoder, max_tokens=TEXT.max_tokens)
    return _stage(
        name,
        image_channels=3,
        in_channels=int(params.get("in_channels", 3)),
        resolution=size,
        unet=unet,
        text=text,
        aug=True,
        learn_sigma=int(params.get("out_channels", 6)) == 6,
    )
