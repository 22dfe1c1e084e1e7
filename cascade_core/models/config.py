"""Configuration objects: every hyperparameter of a stage, stored in its checkpoint.

A ``StageConfig`` round-trips through plain JSON values (``to_dict`` /
``from_dict``, always the current layout) and is what a checkpoint's metadata
holds, so loading needs nothing but the file. Which layout a file was written
in, and how an older one is read, is the business of one module:
``formats.stage_format``.

Words used here: a stage's ``role`` is what it does in a cascade (base, sr,
refiner); its ``network`` is the family of its network (the U-Net, or one of
the shallow recipe's networks); its ``method`` is how that network is sampled
(diffusion, DAE walk-back, or one pass), which ``run.strategies`` looks up.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from ..base.errors import CascadeError
from ..base.fields import check_fields, check_int, check_ints
from ..process.augment import AUG_SCHEDULES
from ..process.schedules import ScheduleConfig

ROLES = ("base", "sr", "refiner")
# the networks each role can have (the shallow-cascade recipe mixes diffusion and one-pass stages)
NETWORKS_BY_ROLE = {"base": ("unet", "dae"), "sr": ("unet", "pixelshuffle", "resnet"),
                    "refiner": ("unet", "conv", "vit")}
# how each network is sampled: the keys of run.strategies.STRATEGIES
METHODS = {"unet": "diffusion", "dae": "dae", "pixelshuffle": "one_pass", "resnet": "one_pass",
           "conv": "one_pass", "vit": "one_pass"}
NOISE_INPUTS = ("timestep", "timestep_raw", "logsnr")
QKV_ORDERS = ("new", "legacy")
ACTIVATIONS = ("silu", "gelu")
# the bounds of every numeric field (base.fields.check_fields): far beyond any released network,
# tight enough that a stranger's file cannot make the loader build something absurd
UNET_LIMITS = {"base_channels": (int, 1, 8192), "attention_resolutions": ("ints", 1, 65536),
               "num_heads": (int, 1, 1024), "dropout": (float, 0.0, 0.999),
               "num_head_channels": (int, 0, 8192), "embedding_channels": (int, 0, 65536),
               "resblock_scale": ("float>", 0.0, 100.0),
               "mid_resblock_scale": ("float>", 0.0, 100.0),
               "text_channels": (int, 0, 65536), "text_pool_heads": (int, 0, 1024),
               "text_only_resolutions": ("ints", 1, 65536)}
STAGE_LIMITS = {"resolution": (int, 1, 65536), "low_res": (int, 0, 65536),
                "channels": (int, 1, 64), "num_classes": (int, 0, 1_000_000),
                "refiner_max_t": ("float>", 0.0, 1.0)}
SHALLOW_LIMITS = {"hidden": (int, 1, 8192), "blocks": (int, 1, 256), "patch": (int, 1, 256),
                  "depth": (int, 1, 256), "heads": (int, 1, 256),
                  "dae_sigma": ("float>", 0.0, 1000.0), "dae_steps": (int, 1, 1000)}
TEXT_LIMITS = {"width": (int, 0, 65536), "max_tokens": (int, 1, 4096)}
AUG_APPLY = ("lowres", "upsampled")
AUGMENT_LIMITS = {"s_max": (float, 0.0, 1.0), "blur_prob": (float, 0.0, 1.0),
                  "default_s": (float, 0.0, 1.0)}


@dataclass(frozen=True)
class UNetConfig:
    """The U-Net's shape: width, channel multipliers per level, blocks, attention, dropout.

    The defaults are this pack's own design; the other options exist so that released files load
    into the same network: ADM and improved-diffusion (``formats.adm``), DeepFloyd IF
    (``formats.deepfloyd``: GELU, a wider embedding activated once, scaled residuals, text keys
    and values joining the image's in attention, the pooled text in the embedding).
    """

    base_channels: int = 64
    channel_mult: tuple = (1, 2, 2)     # may be fractional (ADM 512px: 0.5); widths are int()
    num_res_blocks: int | tuple = 2     # per level when a tuple (IF stage II: (2, 2, 3, 5, 5))
    attention_resolutions: tuple = (8,)  # feature-map sizes at the stage's training resolution
    num_heads: int = 4
    dropout: float = 0.0
    num_head_channels: int = 0          # > 0: heads = channels // this (overrides num_heads)
    qkv_order: str = "new"              # how qkv splits: "new" (q|k|v) or ADM's "legacy" (per head)
    resblock_updown: bool = False       # resample inside residual blocks (ADM) instead of convs
    scale_shift: bool = True            # embedding modulates the norm; False: it is added
    activation: str = "silu"            # "silu" (ours, ADM) or "gelu" (IF)
    embedding_channels: int = 0         # width of the blocks' embedding; 0: 4 x base_channels
    block_embedding_act: bool = True    # each residual block activates the embedding it projects
    embedding_act: bool = False         # the summed embedding is activated once (IF stage II)
    resblock_scale: float = 1.0         # residual blocks' outputs are divided by this (IF II: √2)
    mid_resblock_scale: float = 1.0     # the middle block's residual blocks likewise
    text_channels: int = 0              # width of the text keys and values in attention (0: none)
    text_pool_heads: int = 0            # > 0: the attention-pooled text joins the embedding
    text_only_resolutions: tuple = ()   # feature-map sizes whose attention sees only the text

    def __post_init__(self):
        check_fields(self, UNET_LIMITS)
        if isinstance(self.num_res_blocks, (int, float)):
            object.__setattr__(self, "num_res_blocks", check_int("num_res_blocks",
                                                                 self.num_res_blocks, (1, 64)))
        else:
            object.__setattr__(self, "num_res_blocks",
                               check_ints("num_res_blocks", self.num_res_blocks, (1, 64)))
        mult = self.channel_mult
        if isinstance(mult, (str, bytes)) or not 1 <= len(tuple(mult)) <= 10 or not all(
                isinstance(m, (int, float)) and not isinstance(m, bool) and 0 < m <= 64
                for m in mult):
            raise CascadeError("config field channel_mult is out of range",
                               "1 to 10 numbers in (0, 64]", repr(mult))
        mult = tuple(int(m) if float(m).is_integer() else float(m) for m in self.channel_mult)
        object.__setattr__(self, "channel_mult", mult)
        if (self.base_channels < 1 or not self.channel_mult or min(self.level_blocks) < 1
                or min(self.widths) < 1):
            raise CascadeError("invalid U-Net shape",
                               "base_channels, channel_mult and num_res_blocks >= 1 (one count "
                               "per level when a list)",
                               (self.base_channels, self.channel_mult, self.num_res_blocks))
        if not 0 <= self.dropout < 1:
            raise CascadeError("dropout out of range", "[0, 1)", self.dropout)
        if self.qkv_order not in QKV_ORDERS:
            raise CascadeError("unknown QKV order", f"one of {QKV_ORDERS}", repr(self.qkv_order))
        if self.activation not in ACTIVATIONS:
            raise CascadeError("unknown activation", f"one of {ACTIVATIONS}",
                               repr(self.activation))
        if min(self.resblock_scale, self.mid_resblock_scale) <= 0 or self.embedding_channels < 0:
            raise CascadeError("invalid U-Net scales", "positive residual scales and embedding "
                               "channels >= 0", (self.resblock_scale, self.mid_resblock_scale,
                                                 self.embedding_channels))

    @property
    def level_blocks(self) -> tuple:
        """Residual blocks of each level on the way down (one more on the way up)."""
        if isinstance(self.num_res_blocks, int):
            return (self.num_res_blocks,) * len(self.channel_mult)
        if len(self.num_res_blocks) != len(self.channel_mult):
            raise CascadeError("one residual-block count per level",
                               f"{len(self.channel_mult)} counts", len(self.num_res_blocks))
        return self.num_res_blocks

    @property
    def embedding_width(self) -> int:
        """Width of the embedding every block is conditioned on."""
        return self.embedding_channels or 4 * self.base_channels

    @property
    def widths(self) -> tuple:
        """Channels of each level: ``int(mult * base_channels)``, as ADM rounds them."""
        return tuple(int(m * self.base_channels) for m in self.channel_mult)

    def heads(self, channels: int) -> int:
        """Attention heads at a width: by head channels if set, else ``num_heads`` (one head
        where the width does not split)."""
        if self.num_head_channels > 0:
            if channels % self.num_head_channels:
                raise CascadeError("attention width does not split into heads",
                                   f"a multiple of {self.num_head_channels}", channels)
            return channels // self.num_head_channels
        return self.num_heads if channels % self.num_heads == 0 else 1


@dataclass(frozen=True)
class AugmentConfig:
    """Conditioning augmentation an SR or refiner stage was trained with (paper section 3)."""

    schedule: str = "cosine"        # maps the level s in [0, 1] to a noise level
    s_max: float = 0.5              # training draws s ~ U(0, s_max) per example (amortized)
    blur_prob: float = 0.0          # fraction of a batch that is blurred (paper: 0.5)
    blur_sigma: tuple = (0.4, 0.6)  # blur sigma drawn uniformly from this range
    default_s: float = 0.1          # the level a sampling node starts from
    # where the noise goes: "lowres", on the low-res image, which the network upsamples (CDM,
    # ours, ADM); "upsampled", on the image first upsampled to the output size (bilinear, corners
    # aligned), as DeepFloyd IF stage II is trained and sampled
    apply: str = "lowres"

    def __post_init__(self):
        check_fields(self, AUGMENT_LIMITS)
        object.__setattr__(self, "blur_sigma", tuple(float(v) for v in self.blur_sigma))
        if self.schedule not in AUG_SCHEDULES:
            raise CascadeError("unknown augmentation schedule", f"one of {AUG_SCHEDULES}",
                               repr(self.schedule))
        if self.apply not in AUG_APPLY:
            raise CascadeError("unknown augmentation apply", f"one of {AUG_APPLY}",
                               repr(self.apply))
        for name in ("s_max", "blur_prob", "default_s"):
            if not 0 <= getattr(self, name) <= 1:
                raise CascadeError(f"augmentation {name} out of range", "[0, 1]",
                                   getattr(self, name))


@dataclass(frozen=True)
class TextConfig:
    """The text a stage is conditioned on: the width of its encoder's token embeddings (0: the
    stage takes no text), the encoder's name and the number of tokens it reads."""

    width: int = 0          # T5-v1.1-XXL: 4096
    encoder: str = ""       # e.g. "t5-v1_1-xxl"
    max_tokens: int = 77

    def __post_init__(self):
        check_fields(self, TEXT_LIMITS)
        if self.width < 0 or self.max_tokens < 1:
            raise CascadeError("invalid text config", "width >= 0 and max_tokens >= 1",
                               (self.width, self.max_tokens))


@dataclass(frozen=True)
class ShallowConfig:
    """Hyperparameters of the shallow networks (DAE, PixelShuffle, ResNet, conv, ViT)."""

    hidden: int = 64        # feature channels (ViT: token width)
    blocks: int = 2         # residual blocks
    patch: int = 4          # ViT patch size
    depth: int = 4          # ViT transformer layers
    heads: int = 4          # ViT attention heads
    dae_sigma: float = 1.0  # DAE: trained on sigma ~ U(0, dae_sigma); its chain starts there
    dae_steps: int = 8      # DAE: denoising passes of the sampling chain

    def __post_init__(self):
        check_fields(self, SHALLOW_LIMITS)
        if min(self.hidden, self.blocks, self.patch, self.depth, self.heads, self.dae_steps) < 1:
            raise CascadeError("invalid shallow-stage shape", "positive sizes", asdict(self))
        if self.hidden % self.heads:
            raise CascadeError("ViT width must split into heads", f"a multiple of {self.heads}",
                               self.hidden)


@dataclass(frozen=True)
class SamplingConfig:
    """How a stage must be sampled, where it was made for one way (a distilled student: its
    sampler, step count and spacing); empty: any way the user likes."""

    sampler: str = ""
    steps: int = 0
    spacing: str = ""

    def __post_init__(self):
        if not isinstance(self.steps, int) or isinstance(self.steps, bool) or self.steps < 0:
            raise CascadeError("a stage's recorded step count must be an integer >= 0",
                               ">= 0", repr(self.steps))
        if bool(self.steps) != bool(self.sampler) or bool(self.steps) != bool(self.spacing):
            raise CascadeError("a stage records its sampler, steps and spacing together",
                               "all three or none", (self.sampler, self.steps, self.spacing))

    @property
    def fixed(self) -> bool:
        """True when the stage was made for one sampling (a distilled stage)."""
        return self.steps > 0

    # steps 0 ("as the stage says") on a stage that records no sampling of its own
    UNRECORDED_STEPS = 20

    def resolve(self, steps: int, sampler: str, spacing: str) -> tuple:
        """(steps, sampler, spacing) to sample with when asked for these: steps 0 means as the
        stage says (its recorded sampling; ``UNRECORDED_STEPS`` with the asked sampler and
        spacing on a stage that records none), anything else is sampled as asked."""
        if steps:
            return steps, sampler, spacing
        return (self.steps, self.sampler, self.spacing) if self.fixed else (
            self.UNRECORDED_STEPS, sampler, spacing)

    def departs(self, steps: int, sampler: str, spacing: str) -> bool:
        """True when a distilled stage is asked to sample other than it was made for."""
        return self.fixed and (steps, sampler, spacing) != (self.steps, self.sampler, self.spacing)


@dataclass(frozen=True)
class StageConfig:
    """Everything that describes a stage; stored as JSON in its checkpoint."""

    role: str = "base"                  # base | sr | refiner
    resolution: int = 16                # output resolution it was trained at
    low_res: int = 0                    # conditioning resolution (sr, refiner); 0 for base
    channels: int = 3
    unet: UNetConfig = field(default_factory=UNetConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    parameterization: str = "eps"       # eps | x0 | v
    learn_sigma: bool = False           # hybrid loss with interpolated log-variance
    # timestep: t rescaled to [0, 1000); timestep_raw: t as is (ADM with T != 1000);
    # logsnr: continuous (retune schedules freely)
    noise_conditioning: str = "timestep"
    num_classes: int = 0
    null_class: bool = True             # an extra class row for unconditional / CFG (ADM: none)
    aug_input: bool = True              # sr/refiner: s is a network input (ADM-U: no)
    class_names: tuple = ()
    upsample: str = "bilinear"          # how the low-res conditioning is brought to size
    augmentation: AugmentConfig = field(default_factory=AugmentConfig)
    refiner_max_t: float = 0.3          # refiner trains on t in [0, refiner_max_t * T)
    training: dict = field(default_factory=dict)  # provenance: data, steps, commands
    network: str = "unet"               # see NETWORKS_BY_ROLE: the U-Net, or a shallow network
    shallow: ShallowConfig = field(default_factory=ShallowConfig)
    text: TextConfig = field(default_factory=TextConfig)  # prompts it is conditioned on (if any)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)  # how it must be sampled

    def __post_init__(self):
        check_fields(self, STAGE_LIMITS)
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))
        if self.role not in ROLES:
            raise CascadeError("unknown stage role", f"one of {ROLES}", repr(self.role))
        if self.parameterization not in ("eps", "x0", "v"):
            raise CascadeError("unknown parameterization", "eps, x0 or v",
                               repr(self.parameterization))
        if self.noise_conditioning not in NOISE_INPUTS:
            raise CascadeError("unknown noise conditioning", f"one of {NOISE_INPUTS}",
                               repr(self.noise_conditioning))
        if self.upsample not in ("bilinear", "bicubic", "nearest"):
            raise CascadeError("unknown upsample mode", "bilinear, bicubic or nearest",
                               repr(self.upsample))
        if self.class_names and len(self.class_names) != self.num_classes:
            raise CascadeError("class_names does not match num_classes", self.num_classes,
                               len(self.class_names))
        if self.role == "base" and self.low_res:
            raise CascadeError("a base stage has no low-res input", "low_res 0", self.low_res)
        if self.role == "sr" and not (0 < self.low_res < self.resolution):
            raise CascadeError("an sr stage upsamples",
                               f"0 < low_res < resolution ({self.resolution})", self.low_res)
        if self.role == "refiner" and self.low_res != self.resolution:
            raise CascadeError("a refiner keeps its resolution", f"low_res == {self.resolution}",
                               self.low_res)
        if self.network not in NETWORKS_BY_ROLE[self.role]:
            raise CascadeError(f"a {self.role} stage cannot have a {self.network!r} network",
                               f"one of {NETWORKS_BY_ROLE[self.role]}", self.network)
        if (self.text.width > 0) != (self.unet.text_channels > 0) and self.network == "unet":
            raise CascadeError("a text stage needs both the text width and the U-Net's text "
                               "channels", "text.width and unet.text_channels both > 0 or both 0",
                               (self.text.width, self.unet.text_channels))
        if self.resolution % self.size_multiple:
            raise CascadeError("resolution is not divisible by the network's downsampling",
                               f"a multiple of {self.size_multiple}", self.resolution)

    @property
    def size_multiple(self) -> int:
        """Image sides this stage runs on are multiples of this."""
        if self.network == "unet":
            return 2 ** (len(self.unet.channel_mult) - 1)
        return self.shallow.patch if self.network == "vit" else 1

    @property
    def method(self) -> str:
        """How the stage is sampled and trained: "diffusion", "dae" or "one_pass"."""
        return METHODS[self.network]

    @property
    def conditioned(self) -> bool:
        """True for stages that take a low-resolution (or input) image."""
        return self.role in ("sr", "refiner")

    @property
    def factor(self) -> int:
        """Upsampling factor: output size over conditioning size (1 for base and refiner)."""
        return self.resolution // self.low_res if self.conditioned else 1

    def to_dict(self) -> dict:
        """Plain JSON values in the current layout (``formats.stage_format`` adds the version)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> StageConfig:
        """The config ``to_dict`` wrote (current layout); unknown keys are a clear error."""
        d = dict(d)
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise CascadeError("unknown stage config keys", sorted(known), sorted(unknown))
        d["unet"] = UNetConfig(**d.get("unet", {}))
        d["schedule"] = ScheduleConfig(**d.get("schedule", {}))
        d["augmentation"] = AugmentConfig(**d.get("augmentation", {}))
        d["shallow"] = ShallowConfig(**d.get("shallow", {}))
        d["text"] = TextConfig(**d.get("text", {}))
        d["sampling"] = SamplingConfig(**d.get("sampling", {}))
        return cls(**d)

    def describe(self) -> str:
        """A short description for messages: ``sr 16->32px`` or ``refiner 32px (vit)``."""
        size = f"{self.resolution}px"
        if self.role == "sr":
            size = f"{self.low_res}->{size}"
        return f"{self.role} {size}" + ("" if self.network == "unet" else f" ({self.network})")
