"""Captions for a text-conditioned stage: the sidecar file, its checks, and one encoding per run.

The captions file is JSON Lines, one object per training image::

    {"image": "airplane/0001.png", "caption": "a photo of an airplane"}

``image`` is the image's path relative to ``--data`` (a folder), or its index in the ``.npz``
(an integer, or its digits). ``caption`` is a string; ``""`` is the unconditional case, the
same that caption dropout trains for classifier-free guidance. Every image needs exactly one
line: an image without a caption, a line without one (``null`` or no key), a line naming an
image that does not exist and two lines for one image are refused before training, naming them.

The captions are encoded once: each distinct caption by the run's text encoder, stored beside
the run as ``OUT/captions-<key>.safetensors`` (key: the encoder's fingerprint, the captions
and the image list), so a resumed run and every DDP process read the embeddings instead of
loading the encoder again.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from cascade_core import CascadeError, CheckpointError, PromptEncoder, TextConfig
from cascade_core.formats.atomic import atomic_write
from cascade_core.formats.t5_files import find_tokenizer

from . import distributed as D
from .data import ImageSource

EMPTY = 0  # row of the empty caption in every table: the unconditional case
ENCODE_BATCH = 64


@dataclass
class TextTable:
    """The run's encoded captions: ``tokens`` (U, L, width), row ``EMPTY`` the empty caption;
    ``ids`` (N,) the row of each training image; the encoder's ``name`` and ``fingerprint``."""

    tokens: torch.Tensor
    ids: np.ndarray
    captions: list
    name: str
    fingerprint: str

    def config(self) -> TextConfig:
        """What the stage records of its text."""
        return TextConfig(width=int(self.tokens.shape[-1]), encoder=self.name,
                          max_tokens=int(self.tokens.shape[1]))

    def record(self) -> dict:
        """What the run records of its encoder (a resume must use the same)."""
        return {"name": self.name, "fingerprint": self.fingerprint}


def image_keys(source: ImageSource) -> list[str]:
    """How the captions file names each image of ``source``, in its order."""
    if source.array is not None:
        return [str(i) for i in range(len(source))]
    return [f.relative_to(source.path).as_posix() for f in source.files]


def read_captions(path, source: ImageSource) -> list[str]:
    """One caption per image of ``source``, in its order, from the JSON Lines file ``path``."""
    path = Path(path)
    if not path.is_file():
        raise CascadeError("captions file not found", "a JSON Lines file (--captions)", str(path))
    keys = image_keys(source)
    known = set(keys)
    given, unknown = {}, []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            image, caption = _entry(line, number, path)
            if image not in known:
                unknown.append(image)
            elif image in given:
                raise CascadeError(f"{path.name}: two captions for {image}", "one line per "
                                   "image", f"lines for {image!r} again at line {number}")
            given[image] = caption
    if unknown:
        raise CascadeError(f"{path.name} names {len(unknown)} image(s) that are not in "
                           f"{source.path}", "paths relative to --data (or .npz indices)",
                           unknown[:5])
    missing = [k for k in keys if k not in given]
    if missing:
        raise CascadeError(f"{path.name} has no caption for {len(missing)} of {len(keys)} "
                           "image(s) (an empty caption \"\" is allowed: the unconditional case)",
                           "one line per image", missing[:5])
    return [given[k] for k in keys]


def _entry(line: str, number: int, path: Path) -> tuple[str, str]:
    try:
        entry = json.loads(line)
    except json.JSONDecodeError as e:
        raise CascadeError(f"{path.name} line {number} is not JSON ({e.msg})",
                           '{"image": ..., "caption": ...}', line.strip()[:60]) from None
    if not isinstance(entry, dict) or "image" not in entry:
        raise CascadeError(f"{path.name} line {number} names no image",
                           '{"image": ..., "caption": ...}', line.strip()[:60])
    image, caption = entry["image"], entry.get("caption")
    if not isinstance(caption, str):
        raise CascadeError(f"{path.name} line {number}: the caption of {image} is missing",
                           'a string ("" for none)', repr(caption))
    if isinstance(image, bool) or not isinstance(image, (str, int)):
        raise CascadeError(f"{path.name} line {number}: an image is named by its path or index",
                           "a string or an integer", repr(image))
    return str(image), caption


def fingerprint(weights) -> str:
    """A digest of a text encoder's files (weights, config, tokenizer): the same files give the
    same digest wherever they lie."""
    weights = Path(weights)
    files = sorted(p for p in weights.rglob("*") if p.is_file()) if weights.is_dir() else [weights]
    h = hashlib.sha256()
    for path in [*files, find_tokenizer(weights)]:
        h.update(path.name.encode())
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(2 ** 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def prepare_text(cfg, source: ImageSource, *, out: Path, rt, resumed: dict | None = None
                 ) -> TextTable:
    """The run's encoded captions (``--captions`` through ``--text-encoder``): read from the
    cache beside the run, or encoded by the main process and written there first. ``resumed``:
    the encoder a resumed run started with (another one is refused before anything is
    encoded)."""
    captions = read_captions(cfg.captions, source)
    encoder = Path(cfg.text_encoder)
    if not encoder.exists():
        raise CascadeError("text encoder not found", "a T5 .safetensors file (spiece.model "
                           "beside it) or a text_encoder folder", str(encoder))
    digest = fingerprint(encoder)
    if resumed and resumed.get("fingerprint") != digest:
        raise CascadeError("the text encoder changed since the run started: resume with the one "
                           "it started with (or start a new --out)",
                           f"{resumed.get('name')} ({resumed.get('fingerprint')})",
                           f"{encoder.name} ({digest})")
    distinct = sorted(set(captions) - {""})
    rows = {c: i for i, c in enumerate(["", *distinct])}
    key = hashlib.sha256(json.dumps([digest, distinct, image_keys(source)]).encode())
    cache = out / f"captions-{key.hexdigest()[:16]}.safetensors"
    if rt.is_main and not cache.is_file():
        _encode(encoder, ["", *distinct], cache=cache, device=rt.device, log=print)
    D.barrier(rt)
    with safe_open(str(cache), framework="pt") as f:
        tokens, name = f.get_tensor("tokens"), f.metadata()["encoder"]
    if rt.is_main:
        print(f"captions: {len(captions)} images, {len(distinct)} distinct, encoded by {name} "
              f"({cache.name})", flush=True)
    return TextTable(tokens, np.array([rows[c] for c in captions]), ["", *distinct], name,
                     digest)


def _encode(path: Path, captions: list, *, cache: Path, device, log):
    try:
        encoder = PromptEncoder.load(path)
    except CheckpointError as e:
        raise CascadeError(f"--text-encoder: {e}") from None
    encoder.encoder.to(device)
    log(f"encoding {len(captions)} distinct caption(s) with {encoder.name}", flush=True)
    tokens = torch.cat([encoder.embed(captions[i:i + ENCODE_BATCH]).cpu()
                        for i in range(0, len(captions), ENCODE_BATCH)])
    atomic_write(cache, lambda tmp: save_file({"tokens": tokens.contiguous()}, tmp,
                                              metadata={"encoder": encoder.name}))
