"""Prompts encoded as DeepFloyd IF's pipelines encode them, checked against diffusers'
``IFPipeline.encode_prompt`` with transformers' T5 (``tests/fixtures/t5/make_fixtures.py``: a
tiny SentencePiece model and a random 2-layer T5 v1.1 encoder stand in for T5-v1.1-XXL)."""
import json
import logging

import pytest
import torch
from fixtures.deepfloyd.random_weights import random_state
from safetensors import safe_open
from safetensors.torch import save_file

import cascade_core as cc
from cascade_core.formats.t5_files import load_t5
from cascade_core.formats.t5_tokenizer import T5Tokenizer
from cascade_core.run.prompts import PromptEncoder
from tests.test_deepfloyd import FIXTURES

T5 = FIXTURES.parent / "t5"


@pytest.fixture(scope="module")
def reference():
    with safe_open(str(T5 / "encoding.safetensors"), framework="pt") as f:
        meta, io = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    state = random_state(json.loads(meta["shapes"]), int(meta["seed"]))
    return json.loads(meta["prompts"]), io, state, json.loads(meta["config"])


def write_encoder(folder, state, config=None):
    """A text_encoder folder as downloaded: model.safetensors (+ config.json)."""
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_tokens_and_mask_are_the_reference_tokenizers(reference):
    prompts, io, _, _ = reference
    tokens = T5Tokenizer(T5)(prompts)
    assert torch.equal(tokens.ids, io["ids"]) and torch.equal(tokens.mask, io["mask"])
    assert tokens.dropped[3] and not any(tokens.dropped[:3] + tokens.dropped[4:])


def test_embeddings_equal_encode_prompt_for_prompts_and_the_empty_prompt(reference, tmp_path):
    prompts, io, state, config = reference
    encoder = PromptEncoder.load(write_encoder(tmp_path / "text_encoder", state, config), T5,
                                 name="tiny-t5")
    text = encoder.encode(prompts)
    assert text.tokens.shape == io["embeds"].shape == (5, 77, 32)
    assert float((text.tokens - io["embeds"]).abs().max()) < 1e-5
    assert float((text.negative - io["negative"]).abs().max()) < 1e-5
    # negative control: without the padding mask inside T5 the embeddings differ
    with torch.no_grad():
        raw = encoder.encoder(io["ids"], torch.ones_like(io["mask"]))
    assert float((raw - io["embeds"]).abs().max()) > 1e-2


def test_a_single_file_without_config_loads_and_a_disagreeing_config_is_refused(reference,
                                                                               tmp_path):
    prompts, io, state, config = reference
    single = tmp_path / "t5xxl_tiny.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(single))
    encoder = load_t5(single)
    assert encoder.width == 32 and encoder.cfg.num_layers == 2 and encoder.cfg.num_heads == 4
    with torch.no_grad():
        out = encoder(io["ids"], io["mask"])
    assert float((out - io["embeds"]).abs().max()) < 1e-5
    wrong = write_encoder(tmp_path / "wrong", state, {**config, "num_heads": 8})
    with pytest.raises(cc.CheckpointError, match="config.json and the weights disagree"):
        load_t5(wrong)
    broken = write_encoder(tmp_path / "broken", {k: v for k, v in state.items()
                                                 if "layer.1" not in k})
    with pytest.raises(cc.CheckpointError, match="not a T5 v1.1 encoder"):
        load_t5(broken)


def test_a_long_prompt_is_cut_at_77_tokens_with_a_warning_naming_the_dropped_words(
        reference, tmp_path, caplog):
    prompts, _, state, _ = reference
    encoder = PromptEncoder.load(write_encoder(tmp_path / "te", state), T5)
    with caplog.at_level(logging.WARNING, logger="cascade_core"):
        encoder.embed(prompts[3])
    assert "longer than 77 tokens" in caplog.text and "lake" in caplog.text


def test_missing_tokenizer_and_bad_negative_prompts_are_sentences(reference, tmp_path):
    _, _, state, _ = reference
    with pytest.raises(cc.CheckpointError, match="no T5 tokenizer"):
        T5Tokenizer(tmp_path)
    encoder = PromptEncoder.load(write_encoder(tmp_path / "te", state), T5)
    with pytest.raises(cc.CascadeError, match="one negative prompt, or one per prompt"):
        encoder.encode(["a", "b", "c"], negative=["x", "y"])
    with pytest.raises(cc.CascadeError, match="prompts must be text"):
        encoder.encode([3])
