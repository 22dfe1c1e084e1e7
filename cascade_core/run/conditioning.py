"""What a stage is conditioned on in one run, built once and read by the pipeline and strategies.

A base stage is conditioned on classes (or nothing); an SR stage also on the
low-res image handed over by the previous stage at its augmentation level (a
``LowResCond``, ``run.handover``); a refiner on the image it refines, which it
augments itself to a level ``s``. A text stage also takes a prompt's token
embeddings (``TextCond``), beside or instead of classes: every stage takes one
object, and the stage's config says which parts it reads.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..base.errors import CascadeError, check_finite, check_range
from .handover import LowResCond


@dataclass(frozen=True)
class TextCond:
    """A prompt's token embeddings for a text stage: ``tokens`` (B, L, width) as the encoder
    gives them (padding included; the U-Net gets no mask), ``negative`` (B, L, width) what
    classifier-free guidance starts from (the empty prompt's or a negative prompt's; None: no
    guidance possible), and the ``encoder``'s name ("" when unknown, e.g. from ComfyUI)."""

    tokens: torch.Tensor
    negative: torch.Tensor | None = None
    encoder: str = ""

    def __post_init__(self):
        for name, t in (("prompt", self.tokens), ("negative prompt", self.negative)):
            if t is not None and (not isinstance(t, torch.Tensor) or t.ndim != 3):
                raise CascadeError(f"{name} embeddings must be (batch, tokens, width)",
                                   "a 3-d tensor", getattr(t, "shape", type(t).__name__))
        if self.negative is not None and self.negative.shape != self.tokens.shape:
            raise CascadeError("the negative prompt's embeddings must match the prompt's",
                               tuple(self.tokens.shape), tuple(self.negative.shape))

    def repeat_to(self, batch: int) -> TextCond:
        """One prompt for every image of a batch (a batch of one repeated; else as it is)."""
        if self.tokens.shape[0] == batch or self.tokens.shape[0] != 1:
            return self
        negative = None if self.negative is None else self.negative.expand(batch, -1, -1)
        return TextCond(self.tokens.expand(batch, -1, -1), negative, self.encoder)


@dataclass(frozen=True)
class Conditioning:
    """The batch size, the classes (``labels``: (B,) long, -1 = unconditional; None for a stage
    without classes), and the image the stage is conditioned on: ``lowres`` for an SR stage,
    ``image`` (with its own augmentation level ``image_s``, None = the stage's default) for a
    refiner; ``text``: a prompt's embeddings for a text stage; ``regions``: the members of a
parallel run (``cc.Region``; then ``labels`` and ``text`` are theirs), on a base stage's
``canvas`` (height, width; None: its own size). Use ``for_base``,
    ``for_upsampling`` and ``for_refining``."""

    batch: int
    labels: torch.Tensor | None = None
    lowres: LowResCond | None = None
    image: torch.Tensor | None = None
    image_s: float | None = None
    text: TextCond | None = None
    regions: tuple | None = None
    canvas: tuple | None = None

    def __post_init__(self):
        if self.regions is not None:
            if isinstance(self.regions, (str, bytes)) or not hasattr(self.regions, "__len__") \
                    or not len(self.regions):
                raise CascadeError("regions must be a non-empty list of cc.Region",
                                   "[cc.Region(stage, labels, box=...), ...]", repr(self.regions))
            object.__setattr__(self, "regions", tuple(self.regions))
        if self.canvas is not None:
            canvas = tuple(self.canvas)
            if len(canvas) != 2 or not all(isinstance(v, int) and v >= 1 for v in canvas):
                raise CascadeError("a canvas is (height, width) in pixels", "two integers >= 1",
                                   repr(self.canvas))
            object.__setattr__(self, "canvas", canvas)
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
        if self.text is not None:
            if not isinstance(self.text, TextCond):
                raise CascadeError("text conditioning must be a TextCond", "TextCond(tokens, "
                                   "negative)", type(self.text).__name__)
            text = self.text.repeat_to(self.batch)
            if text.tokens.shape[0] != self.batch:
                raise CascadeError("one prompt, or one per image", f"{self.batch} prompt(s)",
                                   text.tokens.shape[0])
            object.__setattr__(self, "text", text)
        if self.image_s is not None:
            object.__setattr__(self, "image_s", check_range("refiner augmentation level s",
                                                            self.image_s, 0.0, hi=1.0))

    @classmethod
    def for_base(cls, batch: int, labels=None, *, text: TextCond | None = None,
                 regions=None, canvas: tuple | None = None) -> Conditioning:
        """A base stage's run of ``batch`` images of ``labels`` (None: unconditional) and, for a
        text stage, ``text``; or of ``regions`` merged on a ``canvas``."""
        return cls(batch=int(batch), labels=labels, text=text, regions=regions, canvas=canvas)

    @classmethod
    def for_upsampling(cls, lowres: LowResCond, labels=None, *, text: TextCond | None = None,
                       regions=None) -> Conditioning:
        """An SR stage's run on ``lowres`` (the batch is its images), with ``text`` for a text
        stage, or with ``regions`` on the upsampled canvas."""
        if not isinstance(lowres, LowResCond):
            raise CascadeError("an SR stage is conditioned on a low-res handover",
                               "a LowResCond (make_condition, or a base stage's output)",
                               type(lowres).__name__)
        return cls(batch=lowres.image.shape[0], labels=labels, lowres=lowres, text=text,
                   regions=regions)

    @classmethod
    def for_refining(cls, image: torch.Tensor, s: float | None = None, labels=None, *,
                     text: TextCond | None = None, regions=None) -> Conditioning:
        """A refiner's run on ``image``, its own conditioning augmented to level ``s`` (or
        ``regions`` of it, each refined by its member)."""
        return cls(batch=image.shape[0], labels=labels, image=image, image_s=s, text=text,
                   regions=regions)
