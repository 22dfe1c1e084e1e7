"""OpenAI's released ADM / improved-diffusion checkpoints as stages of this pack.

A released ``.pt`` is a bare state dict. What it is follows in three steps:

1. **Shapes** give the widths, channel multipliers, residual blocks per level,
   attention levels, resblock up/down, scale-shift, learned sigma, classes and
   whether it is an upsampler (six input channels) or a classifier (an
   attention-pool head) — ``infer_shapes``.
2. **A table** of the released files (``adm_table.RELEASED``), keyed by a
   fingerprint of the sorted (key, shape) list, gives what shapes cannot:
   resolution, attention heads, QKV order, noise schedule, T, timestep input.
   File names are not keys (users rename files). Any table value can be
   overridden; a file that matches no entry is an error listing what the shapes
   said, unless the overrides supply every table value.
3. **Keys** are renamed onto the one U-Net of ``models.unet`` (whose layout
   mirrors ADM's block for block) — ``to_our_keys``.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, fields, replace

from ..base.errors import CheckpointError
from ..models.config import AugmentConfig, StageConfig, UNetConfig
from ..models.noisy_classifier import ClassifierConfig, NoisyClassifier
from ..models.stage import Stage
from ..process.schedules import ScheduleConfig
from .adm_table import RELEASED, TableEntry, imagenet_class_names
from .weight_check import check_finite_weights, mismatch


def fingerprint(shapes: dict) -> str:
    """16 hex digits of SHA-256 over the sorted ``key:shape`` lines: the table's key."""
    lines = "\n".join(f"{k}:{','.join(str(int(d)) for d in shapes[k])}" for k in sorted(shapes))
    return hashlib.sha256(lines.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Inferred:
    """What a released state dict's shapes say about it."""

    family: str                # "unet" or "classifier"
    base_channels: int
    channel_mult: tuple
    num_res_blocks: int | None  # None for classifiers (not decidable from shapes; table)
    attention_levels: tuple
    resblock_updown: bool
    scale_shift: bool
    in_channels: int
    learn_sigma: bool
    num_classes: int
    pool_size: int = 0

    def describe(self) -> str:
        """One line for error messages."""
        return ", ".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self))


def _blocks(shapes: dict, prefix: str) -> list[int]:
    found = {int(m.group(1)) for k in shapes if (m := re.match(rf"{prefix}\.(\d+)\.", k))}
    return sorted(found)


def _has(shapes: dict, prefix: str) -> bool:
    return any(k.startswith(prefix) for k in shapes)


def infer_shapes(shapes: dict, name: str = "the file") -> Inferred:
    """Read an ADM-layout key -> shape mapping (see the module docstring); a layout that is
    ADM-like but not one this reader knows is a CheckpointError naming ``name`` and the key."""
    need = ("time_embed.0.weight", "input_blocks.0.0.weight")
    if not all(k in shapes for k in need):
        raise CheckpointError(f"{name} is not an ADM / improved-diffusion state dict",
                              f"keys {list(need)}", sorted(shapes)[:4])
    try:
        return _infer(shapes)
    except (KeyError, IndexError, ValueError, ZeroDivisionError) as e:
        raise CheckpointError(f"{name} has an ADM-like layout this pack does not know",
                              "the blocks of an ADM / improved-diffusion U-Net or classifier",
                              f"no {e} ({type(e).__name__})" if isinstance(e, KeyError)
                              else f"{type(e).__name__}: {e}") from None


def _infer(shapes: dict) -> Inferred:
    ch = int(shapes["time_embed.0.weight"][1])
    in_ch = int(shapes["input_blocks.0.0.weight"][1])
    classifier = "out.2.positional_embedding" in shapes
    if classifier:
        return _infer_classifier(shapes, ch, in_ch)
    outs = _blocks(shapes, "output_blocks")
    ups = [n for n in outs if _has(shapes, f"output_blocks.{n}.1.conv.")
           or _has(shapes, f"output_blocks.{n}.2.conv.")
           or _has(shapes, f"output_blocks.{n}.1.in_layers.")
           or _has(shapes, f"output_blocks.{n}.2.in_layers.")]
    levels = len(ups) + 1
    nrb = len(outs) // levels - 1
    updown = not any(k.endswith(".op.weight") for k in shapes)
    widths, attention = [], []
    for level in range(levels):
        first = 1 + level * (nrb + 1)
        widths.append(int(shapes[f"input_blocks.{first}.0.out_layers.3.weight"][0]))
        if f"input_blocks.{first}.1.qkv.weight" in shapes:
            attention.append(level)
    emb_rows = int(shapes["input_blocks.1.0.emb_layers.1.weight"][0])
    return Inferred(family="unet", base_channels=ch, channel_mult=tuple(w / ch for w in widths),
                    num_res_blocks=nrb, attention_levels=tuple(attention),
                    resblock_updown=updown, scale_shift=emb_rows == 2 * widths[0],
                    in_channels=in_ch, learn_sigma=int(shapes["out.2.weight"][0]) == 2 * 3,
                    num_classes=int(shapes["label_emb.weight"][0])
                    if "label_emb.weight" in shapes else 0)


def _infer_classifier(shapes: dict, ch: int, in_ch: int) -> Inferred:
    pos = shapes["out.2.positional_embedding"]
    emb_rows = int(shapes["input_blocks.1.0.emb_layers.1.weight"][0])
    first = int(shapes["input_blocks.1.0.out_layers.3.weight"][0])
    return Inferred(family="classifier", base_channels=ch, channel_mult=(), num_res_blocks=None,
                    attention_levels=(),
                    resblock_updown=not any(k.endswith(".op.weight") for k in shapes),
                    scale_shift=emb_rows == 2 * first, in_channels=in_ch, learn_sigma=False,
                    num_classes=int(shapes["out.2.c_proj.weight"][0]),
                    pool_size=round((int(pos[1]) - 1) ** 0.5))


def table_entry(shapes: dict, name: str, overrides: dict | None = None) -> TableEntry:
    """The table entry of a state dict (by fingerprint), with ``overrides`` applied."""
    overrides = dict(overrides or {})
    known = {f.name for f in fields(TableEntry)} - {"files", "fingerprint", "what"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise CheckpointError(f"{name}: unknown override(s) {unknown}", sorted(known))
    key = fingerprint(shapes)
    entry = next((e for e in RELEASED if e.fingerprint == key), None)
    if entry is None:
        classifier = overrides.get("family") == "classifier"
        needed = ("resolution", "schedule", "timesteps") + (() if classifier else ("role",))
        missing = sorted(f for f in needed if f not in overrides)
        if missing:
            described = infer_shapes(shapes, name).describe()
            raise CheckpointError(
                f"{name} matches none of the released ADM / improved-diffusion files this pack "
                f"knows (fingerprint {key}); its shapes say: {described}",
                "a released file, or overrides for at least role (or family=classifier), "
                "resolution, schedule and timesteps (and heads, QKV order, timestep input if not "
                "the defaults)",
                f"missing {missing}")
        entry = TableEntry(files=(), fingerprint=key, what="user-described ADM checkpoint",
                           resolution=int(overrides["resolution"]))
    return replace(entry, **overrides)


def adm_config(shapes: dict, name: str, overrides: dict | None = None):
    """The StageConfig (or ClassifierConfig) of an ADM-layout state dict."""
    entry = table_entry(shapes, name, overrides)
    inferred = infer_shapes(shapes, name)
    if entry.family != inferred.family:
        raise CheckpointError(f"{name}: its table entry says {entry.family!r} but its shapes say "
                              f"{inferred.family!r}")
    unet = UNetConfig(
        base_channels=inferred.base_channels,
        channel_mult=inferred.channel_mult or entry.channel_mult,
        num_res_blocks=inferred.num_res_blocks or entry.num_res_blocks,
        attention_resolutions=tuple(entry.resolution // 2 ** i for i in inferred.attention_levels)
        if inferred.family == "unet" else entry.attention_resolutions,
        num_heads=entry.num_heads, num_head_channels=entry.num_head_channels,
        qkv_order=entry.qkv_order, resblock_updown=inferred.resblock_updown,
        scale_shift=inferred.scale_shift)
    schedule = ScheduleConfig(beta_schedule=entry.schedule, timesteps=entry.timesteps)
    imagenet = entry.classes == "imagenet" and inferred.num_classes == len(imagenet_class_names())
    names = imagenet_class_names() if imagenet else ()
    provenance = {"name": name, "source": entry.what, "fingerprint": entry.fingerprint}
    if inferred.family == "classifier":
        return ClassifierConfig(resolution=entry.resolution, unet=unet, schedule=schedule,
                                num_classes=inferred.num_classes, class_names=names,
                                noise_conditioning=entry.noise_input, training=provenance)
    return StageConfig(
        role=entry.role, resolution=entry.resolution, low_res=entry.low_res, channels=3,
        unet=unet, schedule=schedule, parameterization="eps", learn_sigma=inferred.learn_sigma,
        noise_conditioning=entry.noise_input, num_classes=inferred.num_classes,
        class_names=names if inferred.num_classes else (), null_class=False, aug_input=False,
        upsample="bilinear", augmentation=AugmentConfig(s_max=0.0, default_s=0.0),
        training=provenance)


# ADM key -> ours; applied in order to each key (block indices carry over: our layout mirrors
# ADM's block for block)
_RENAMES = [
    (r"^time_embed\.", "noise_mlp."),
    (r"^label_emb\.", "class_emb."),
    (r"^input_blocks\.0\.0\.", "stem."),
    (r"^input_blocks\.(\d+)\.", lambda m: f"down.{int(m.group(1)) - 1}."),
    (r"^middle_block\.", "mid."),
    (r"^output_blocks\.", "up."),
    (r"\.in_layers\.0\.", ".norm1."), (r"\.in_layers\.2\.", ".conv1."),
    (r"\.emb_layers\.1\.", ".emb."), (r"\.out_layers\.0\.", ".norm2."),
    (r"\.out_layers\.3\.", ".conv2."), (r"\.skip_connection\.", ".skip."),
    (r"\.proj_out\.", ".out."), (r"\.op\.", ".conv."),
]
_HEADS = {"unet": [(r"^out\.", "head.")],
          "classifier": [(r"^out\.0\.", "norm."), (r"^out\.2\.positional_embedding$", "pool.pos"),
                         (r"^out\.2\.qkv_proj\.", "pool.qkv."),
                         (r"^out\.2\.c_proj\.", "pool.proj.")]}


def to_our_keys(state: dict, family: str) -> dict:
    """An ADM state dict renamed onto our module names (values untouched)."""
    out = {}
    for key, value in state.items():
        new = key
        for pattern, repl in _RENAMES + _HEADS[family]:
            new = re.sub(pattern, repl, new)
        out[new] = value
    return out


def fit_shapes(tensors: dict, expected: dict, name: str) -> dict:
    """Match ``tensors`` to a module's state dict: 1-D convolutions and linear layers (attention
    qkv and projections) become our 1x1 2-D convolutions, and 1x1 1-D convolutions our linear
    layers (IF's text keys and values); anything missing, extra or misshapen is an error."""
    out = {}
    for k, v in tensors.items():
        want = expected[k].shape if k in expected else None
        while want is not None and v.dim() < len(want) and want[v.dim()] == 1:
            v = v.unsqueeze(-1)
        if want is not None and v.dim() == len(want) + 1 and v.shape[-1] == 1:
            v = v.squeeze(-1)
        out[k] = v
    found = mismatch(out, expected)
    if found:
        raise CheckpointError(f"{name}: weights do not fit the inferred network", "a match",
                              found)
    return out


def load_adm(state: dict, name: str, overrides: dict | None = None):
    """A Stage (or NoisyClassifier) in float32 holding a released state dict's weights."""
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    cfg = adm_config(shapes, name, overrides)
    if isinstance(cfg, ClassifierConfig):
        model = NoisyClassifier(cfg)
        tensors = to_our_keys(state, "classifier")
    else:
        model = Stage(cfg)
        tensors = {f"net.{k}": v for k, v in to_our_keys(state, "unet").items()}
    expected = model.state_dict()
    fitted = fit_shapes(tensors, expected, name)
    check_finite_weights(state, name)
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in fitted.items()})
    return model.eval()

