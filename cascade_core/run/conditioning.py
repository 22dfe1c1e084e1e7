"""What a stage is conditioned on in one run, built once and read by the pipeline and strategies.

A base stage is conditioned on classes (or nothing); an SR stage also on the
low-res image handed over by the previous stage at its augmentation level (a
``LowResCond``, ``run.handover``); a refiner on the image it refines, which it
augments itself to a level ``s``. Text conditioning will join here as one
more field, so every stage keeps taking one object.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..base.errors import CascadeError, check_finite, check_range
from .handover import LowResCond


@dataclass(frozen=True)
class Conditioning:
    """The batch size, the classes (``labels``: (B,) long, -1 = unconditional; None for a stage
    without classes), and the image the stage is conditioned on: ``lowres`` for an SR stage,
    ``image`` (with its own augmentation level ``image_s``, None = the stage's default) for a
    refiner. Use ``for_base``, ``for_upsampling`` and ``for_refining``."""

    batch: int
    labels: torch.Tensor | None = None
    lowres: LowResCond | None = None
    image: torch.Tensor | None = None
    image_s: float | None = None

    def __post_init__(self):
        if not isinstance(self.batch, int) or isinstance(self.batch, bool) or self.batch < 1:
            raise CascadeError("batch size out of range", "an integer >= 1", self.batch)
        if self.labels is not None:
            labels = torch.as_tensor(self.labels)
            if labels.dtype not in (torch.int64, torch.int32) or labels.shape != (self.batch,):
                raise CascadeError("one class index per image", f"a ({self.batch},) integer "
                                   "tensor", f"{tuple(labels.shape)} {labels.dtype}")
            object.__setattr__(self, "labels", labels.long())
        if self.image is not None:
            if self.image.ndim != 4 or self.image.shape[0] != self.batch:
                raise CascadeError("the image to refine must be a batch", f"({self.batch}, C, H, "
                                   "W)", tuple(self.image.shape))
            check_finite("the image to refine", self.image)
        if self.image_s is not None:
            object.__setattr__(self, "image_s", check_range("refiner augmentation level s",
                                                            self.image_s, 0.0, hi=1.0))

    @classmethod
    def for_base(cls, batch: int, labels=None) -> Conditioning:
        """A base stage's run of ``batch`` images of ``labels`` (None: unconditional)."""
        return cls(batch=int(batch), labels=labels)

    @classmethod
    def for_upsampling(cls, lowres: LowResCond, labels=None) -> Conditioning:
        """An SR stage's run on ``lowres`` (the batch is its images)."""
        if not isinstance(lowres, LowResCond):
            raise CascadeError("an SR stage is conditioned on a low-res handover",
                               "a LowResCond (make_condition, or a base stage's output)",
                               type(lowres).__name__)
        return cls(batch=lowres.image.shape[0], labels=labels, lowres=lowres)

    @classmethod
    def for_refining(cls, image: torch.Tensor, s: float | None = None,
                     labels=None) -> Conditioning:
        """A refiner's run on ``image``, its own conditioning augmented to level ``s``."""
        return cls(batch=image.shape[0], labels=labels, image=image, image_s=s)
