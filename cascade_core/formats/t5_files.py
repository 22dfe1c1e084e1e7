"""T5 v1.1 encoder weights as they are downloaded: IF's ``text_encoder/`` folder (``config.json``
with ``model.safetensors`` or shards and their index, fp16 variants too), or one
``.safetensors`` file such as ComfyUI's ``t5xxl_fp16.safetensors``. The shape comes from the
weights themselves (width, layers, heads, feed-forward size, vocabulary), so a file without a
config loads too; a config present must agree with them.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..base.errors import CheckpointError
from ..models.t5 import T5Config, T5Encoder
from .deepfloyd_files import read_safetensors, read_shards, to_dtype
from .weight_check import check_finite_weights, mismatch

WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "model.fp16.safetensors",
           "model.fp16.safetensors.index.json")
BIAS = "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"
QUERY = "encoder.block.0.layer.0.SelfAttention.q.weight"
GATE = "encoder.block.0.layer.1.DenseReluDense.wi_0.weight"


def read_weights(path: Path) -> dict:
    """The tensors of a text-encoder folder or file, decoder parts (if any) left out."""
    if path.is_dir():
        weights = next((path / n for n in WEIGHTS if (path / n).is_file()), None)
        if weights is None:
            raise CheckpointError(f"{path.name}: no T5 weights", f"one of {list(WEIGHTS)}",
                                  sorted(p.name for p in path.iterdir())[:8])
        path = weights
    if path.name.endswith(".json"):
        tensors = read_shards(path)
    elif path.suffix == ".safetensors":
        tensors = read_safetensors(path)
    else:
        raise CheckpointError(f"{path.name} is not a T5 encoder", "a .safetensors file or a "
                              "text_encoder folder", path.suffix or "no extension")
    if "shared.weight" not in tensors and "encoder.embed_tokens.weight" in tensors:
        tensors["shared.weight"] = tensors["encoder.embed_tokens.weight"]
    return {k: v for k, v in tensors.items()
            if k == "shared.weight" or (k.startswith("encoder.") and k != "encoder.embed_tokens"
                                        ".weight")}


def config_from_weights(tensors: dict, name: str) -> T5Config:
    """The encoder's shape, read from its weights."""
    missing = [k for k in ("shared.weight", BIAS, QUERY, GATE) if k not in tensors]
    if missing:
        raise CheckpointError(f"{name}: not a T5 v1.1 encoder", "the token embedding and a first "
                              "layer with relative attention and a gated feed-forward",
                              f"no {', '.join(missing)}")
    vocab, width = tensors["shared.weight"].shape
    buckets, heads = tensors[BIAS].shape
    inner = tensors[QUERY].shape[0]
    layers = 1 + max(int(k.split(".")[2]) for k in tensors if k.startswith("encoder.block."))
    d_ff = tensors[GATE].shape[0]
    return T5Config(vocab_size=vocab, d_model=width, d_kv=inner // heads, d_ff=d_ff,
                    num_layers=layers, num_heads=heads, relative_attention_num_buckets=buckets)


def load_t5(path, dtype: torch.dtype = torch.float32) -> T5Encoder:
    """A T5 encoder in ``dtype`` from a download (folder or file); a clear error for anything
    else, for weights that disagree with their own config, and for NaN or infinite weights."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no T5 encoder at {path}")
    tensors = read_weights(path)
    cfg = config_from_weights(tensors, path.name)
    config = path / "config.json" if path.is_dir() else None
    if config is not None and config.is_file():
        given = T5Config.from_json(json.loads(config.read_text()))
        if given != cfg:
            raise CheckpointError(f"{path.name}: config.json and the weights disagree",
                                  str(given), str(cfg))
    with torch.device("meta"):
        encoder = T5Encoder(cfg)
    expected = encoder.state_dict()
    problem = mismatch(tensors, expected)
    if problem:
        raise CheckpointError(f"{path.name}: not a T5 v1.1 encoder ({problem})")
    check_finite_weights(tensors, path.name)
    encoder.load_state_dict(to_dtype(tensors, dtype), assign=True)
    return encoder.eval()


def find_tokenizer(path) -> Path:
    """Where T5's spiece.model is for the encoder at ``path``: beside it, or in a ``tokenizer/``
    folder next to it (where IF's download keeps it)."""
    path = Path(path)
    base = path if path.is_dir() else path.parent
    for candidate in (base / "spiece.model", base / "tokenizer" / "spiece.model",
                      base.parent / "tokenizer" / "spiece.model"):
        if candidate.is_file():
            return candidate
    raise CheckpointError(f"no T5 tokenizer (spiece.model) beside {path.name} or in a tokenizer/ "
                          "folder next to it")


def encoder_name(path, config: T5Config) -> str:
    """The name a text stage records for its encoder: T5-v1.1-XXL's for that shape, for a
    ``text_encoder`` folder (an IF download, whose encoder it is) and for a file named
    ``t5xxl*`` (ComfyUI's), else the file's stem or the folder's name."""
    path = Path(path)
    if config == T5Config() or (path.is_dir() and path.name == "text_encoder") or (
            path.is_file() and path.name.lower().startswith("t5xxl")):
        return "t5-v1_1-xxl"
    return path.name if path.is_dir() else path.stem
