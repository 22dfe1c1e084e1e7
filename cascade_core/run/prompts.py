"""Prompts into a text stage's conditioning: tokenize, encode with T5, and, for classifier-free
guidance, encode the empty (or a negative) prompt the same way, as DeepFloyd IF's pipelines do.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..base.errors import CascadeError
from ..formats.t5_files import encoder_name, find_tokenizer, load_t5
from ..formats.t5_tokenizer import MAX_TOKENS, T5Tokenizer
from ..models.t5 import T5Encoder
from .conditioning import TextCond

log = logging.getLogger("cascade_core")
T5_XXL = "t5-v1_1-xxl"  # the name IF's stages record for their encoder


class PromptEncoder:
    """A T5 encoder and its tokenizer; ``name`` is what a text stage records as its encoder."""

    def __init__(self, encoder: T5Encoder, tokenizer: T5Tokenizer, name: str = T5_XXL):
        self.encoder, self.tokenizer, self.name = encoder, tokenizer, name

    @classmethod
    def load(cls, weights, tokenizer=None, *, dtype: torch.dtype = torch.float32,
             name: str | None = None) -> PromptEncoder:
        """From a download: ``weights`` a text_encoder folder or a file, ``tokenizer`` a
        folder holding spiece.model (or the file; None: beside the weights or in a tokenizer/
        folder next to them). ``name``: as ``formats.t5_files.encoder_name`` gives it unless
        said (T5-v1.1-XXL's for that shape, else the file's stem)."""
        encoder = load_t5(Path(weights), dtype=dtype)
        tokenizer = find_tokenizer(weights) if tokenizer is None else tokenizer
        return cls(encoder, T5Tokenizer(tokenizer), name=name or encoder_name(weights,
                                                                             encoder.cfg))

    @torch.no_grad()
    def embed(self, prompts) -> torch.Tensor:
        """(B, 77, width) float32 embeddings of ``prompts``, the padding masked inside T5; words
        past 77 tokens are cut, with a warning naming them."""
        tokens = self.tokenizer(prompts, MAX_TOKENS)
        for prompt, cut in zip([prompts] if isinstance(prompts, str) else prompts,
                               tokens.dropped):
            if cut:
                log.warning("prompt longer than %d tokens, cut as IF cuts it: dropped %r from "
                            "%r", MAX_TOKENS, cut, prompt[:60])
        device = next(self.encoder.parameters()).device
        return self.encoder(tokens.ids.to(device), tokens.mask.to(device)).float()

    def encode(self, prompts, *, negative=None, guidance: bool = True) -> TextCond:
        """The conditioning of ``prompts`` (one per image, or one for all); with ``guidance``
        also the embeddings guidance starts from: ``negative`` (one, or one per prompt) or the
        empty prompt."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        tokens = self.embed(prompts)
        if not guidance:
            return TextCond(tokens, None, self.name)
        negative = [""] if negative is None else (
            [negative] if isinstance(negative, str) else list(negative))
        if len(negative) not in (1, len(prompts)):
            raise CascadeError("one negative prompt, or one per prompt",
                               f"1 or {len(prompts)}", len(negative))
        null = self.embed(negative)
        return TextCond(tokens, null.expand_as(tokens) if len(negative) == 1 else null,
                        self.name)
