"""T5's tokenizer, as DeepFloyd IF's pipelines tokenize a prompt: lower-cased and stripped, then
SentencePiece pieces, ``</s>`` at the end, cut to 77 tokens (the end token kept) and padded with
``<pad>`` (id 0), with a mask of 1 for the tokens and 0 for the padding.

Reads the ``spiece.model`` of IF's ``tokenizer/`` folder (or any T5 v1.1 download) with the
``sentencepiece`` package, which is needed only for prompts (``pip install sentencepiece``).
diffusers' optional ``clean_caption`` (URL, HTML and punctuation scrubbing with bs4 and ftfy) is
not reproduced: for prompts without URLs, markup or unusual punctuation it does nothing more
than lower-case and strip.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..base.errors import CascadeError, CheckpointError

MAX_TOKENS = 77  # IF's encoder was trained on 77 tokens (T5 itself reads more)
PAD_ID, EOS_ID = 0, 1


@dataclass(frozen=True)
class Tokens:
    """A batch of tokenized prompts: ``ids`` and ``mask`` (B, 77) and, per prompt, the words cut
    off past 77 tokens ("" when none were)."""

    ids: torch.Tensor
    mask: torch.Tensor
    dropped: tuple


def preprocess(prompt: str) -> str:
    """What IF's pipelines do to a prompt before tokenizing it (without ``clean_caption``)."""
    return prompt.lower().strip()


class T5Tokenizer:
    """A SentencePiece model (``spiece.model``) used the way IF's pipelines use T5's."""

    def __init__(self, path):
        try:
            import sentencepiece
        except ImportError:
            raise CascadeError("prompts need the sentencepiece package",
                               "pip install sentencepiece", "not installed") from None
        path = Path(path)
        if path.is_dir():
            path = path / "spiece.model"
        if not path.is_file():
            raise CheckpointError(f"no T5 tokenizer at {path}: expected the spiece.model of a "
                                  "T5 v1.1 download (IF's tokenizer/ folder)")
        self.sp = sentencepiece.SentencePieceProcessor()
        try:
            self.sp.Load(str(path))
        except (OSError, RuntimeError) as e:
            raise CheckpointError(f"{path.name} is not a SentencePiece model ({e})") from None
        self.name = path.parent.name

    def __call__(self, prompts, max_tokens: int = MAX_TOKENS) -> Tokens:
        """Token ids and mask of ``prompts`` (a string or a list), each cut and padded to
        ``max_tokens``."""
        if isinstance(prompts, str):
            prompts = [prompts]
        if not prompts or not all(isinstance(p, str) for p in prompts):
            raise CascadeError("prompts must be text", "a string or a list of strings",
                               type(prompts).__name__)
        ids = torch.full((len(prompts), max_tokens), PAD_ID, dtype=torch.long)
        mask = torch.zeros_like(ids)
        dropped = []
        for i, prompt in enumerate(prompts):
            pieces = self.sp.EncodeAsIds(preprocess(prompt))
            kept = pieces[:max_tokens - 1] + [EOS_ID]
            ids[i, :len(kept)] = torch.tensor(kept)
            mask[i, :len(kept)] = 1
            dropped.append(self.sp.DecodeIds(pieces[max_tokens - 1:]))
        return Tokens(ids, mask, tuple(dropped))
