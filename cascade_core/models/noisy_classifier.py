"""The noisy classifier of classifier guidance (ADM-G): the U-Net's encoder and an attention pool.

``p(y | x_t, t)`` is trained on noisy images at every timestep, so its gradient
steers a base stage towards a class (Dhariwal & Nichol 2021). The encoder is the
U-Net's own (``unet.Encoder``); only the head is new: CLIP-style attention
pooling whose query is the mean feature, over positions carrying a learned
embedding of fixed size, so a classifier runs only at the resolution it was
trained at.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..base.errors import CascadeError
from ..process.schedules import DiscreteSchedule, ScheduleConfig
from .config import UNetConfig
from .unet import Encoder, attend, embedding_mlp, group_norm, sinusoidal_embedding


@dataclass(frozen=True)
class ClassifierConfig:
    """A noisy classifier's shape, its diffusion schedule and its classes."""

    resolution: int = 64
    channels: int = 3
    unet: UNetConfig = field(default_factory=UNetConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    num_classes: int = 1000
    class_names: tuple = ()
    noise_conditioning: str = "timestep_raw"  # ADM's classifiers take the raw timestep
    training: dict = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))
        if self.unet.num_head_channels < 1:
            raise CascadeError("the attention pool splits heads by channels",
                               "unet.num_head_channels >= 1", self.unet.num_head_channels)
        if self.class_names and len(self.class_names) != self.num_classes:
            raise CascadeError("class_names does not match num_classes", self.num_classes,
                               len(self.class_names))

    @property
    def pool_size(self) -> int:
        """Side of the feature map the pool sees (its position embedding is fixed to it)."""
        return self.resolution // 2 ** (len(self.unet.channel_mult) - 1)

    def to_dict(self) -> dict:
        """Plain JSON values in the current layout (``formats.stage_format`` adds the version)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ClassifierConfig:
        """The config ``to_dict`` wrote (current layout)."""
        d = dict(d)
        try:
            d["unet"] = UNetConfig(**d.get("unet", {}))
            d["schedule"] = ScheduleConfig(**d.get("schedule", {}))
            return cls(**d)
        except TypeError as e:
            raise CascadeError(f"unknown classifier config keys ({e})") from None

    def describe(self) -> str:
        """``classifier 64px (1000 classes)``."""
        return f"classifier {self.resolution}px ({self.num_classes} classes)"


class AttentionPool(nn.Module):
    """Attention pooling: the mean feature attends over itself and every position, each with a
    learned position embedding; the pooled query is projected to the logits."""

    def __init__(self, size: int, channels: int, head_channels: int, out: int):
        super().__init__()
        self.pos = nn.Parameter(torch.randn(channels, size * size + 1) / channels ** 0.5)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj = nn.Conv1d(channels, out, 1)
        self.heads = channels // head_channels

    def forward(self, x):
        """(B, C, H, W) features -> (B, out) logits."""
        x = rearrange(x, "b c h w -> b c (h w)")
        x = torch.cat([x.mean(dim=-1, keepdim=True), x], dim=-1) + self.pos.to(x.dtype)
        return self.proj(attend(self.qkv(x), self.heads, "new"))[:, :, 0]


class NoisyClassifier(Encoder):
    """logits of ``p(y | x_t)``: the U-Net encoder, GroupNorm + SiLU, an attention pool."""

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = config
        u = config.unet
        self.noise_mlp = embedding_mlp(u.base_channels, u.embedding_width)
        self.build_encoder(u, config.resolution, in_ch=config.channels)
        self.norm = group_norm(self.out_channels)
        self.pool = AttentionPool(config.pool_size, self.out_channels,
                                  head_channels=u.num_head_channels, out=config.num_classes)
        self.schedule = DiscreteSchedule.from_config(config.schedule)

    @property
    def name(self) -> str:
        """The name stored at conversion, else a description."""
        return self.config.training.get("name") or self.config.describe()

    def check_size(self, x: torch.Tensor):
        """Refuse images of another size than the one the position embedding was trained at."""
        if tuple(x.shape[-2:]) != (self.config.resolution,) * 2:
            raise CascadeError(f"{self.name} classifies only {self.config.resolution}px images "
                               "(its attention pool has a fixed-size position embedding)",
                               f"{self.config.resolution}x{self.config.resolution}",
                               "x".join(str(v) for v in x.shape[-2:]))

    def forward(self, zt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Logits for VP latents ``zt`` at (fractional) timesteps ``t`` of its schedule."""
        self.check_size(zt)
        c_noise = t.float() * (1.0 if self.config.noise_conditioning == "timestep_raw"
                               else 1000.0 / self.schedule.T)
        ch = self.config.unet.base_channels
        emb = self.noise_mlp(sinusoidal_embedding(c_noise, ch).to(zt.dtype))
        h, _ = self.encode(zt, emb.to(zt.dtype))
        return self.pool(F.silu(self.norm(h)))

    def log_prob_grad(self, zt: torch.Tensor, sigma, labels: torch.Tensor) -> torch.Tensor:
        """``d log p(labels | z_t) / d z_t`` at VE level ``sigma``, computed with autograd even
        when called under ``inference_mode`` or ``no_grad`` (the sampler's context)."""
        self.leave_inference_mode()
        with torch.inference_mode(False), torch.enable_grad():  # every tensor here is ordinary
            sigma = torch.as_tensor(sigma, dtype=torch.float64).clone().flatten()
            t = self.schedule.sigma_to_t(sigma.expand(zt.shape[0])).to(zt.device)
            z = zt.detach().clone().requires_grad_(True)
            logp = F.log_softmax(self(z.to(self.dtype), t).float(), dim=-1)
            chosen = logp.gather(1, labels.clone().view(-1, 1).to(z.device)).sum()
            return torch.autograd.grad(chosen, z)[0]

    def leave_inference_mode(self):
        """Weights created under ``torch.inference_mode`` (ComfyUI runs every node in it, so a
        classifier loaded or moved there has such weights) cannot take part in autograd: replace
        them, once, by ordinary copies."""
        if not any(p.is_inference() for p in self.parameters()):
            return
        with torch.inference_mode(False):
            for module in self.modules():
                for name, p in list(module._parameters.items()):
                    if p is not None and p.is_inference():
                        module._parameters[name] = nn.Parameter(p.clone(), requires_grad=False)

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the weights."""
        return next(self.parameters()).dtype
