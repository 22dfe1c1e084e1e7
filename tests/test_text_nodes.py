"""Prompts in the graph: CDM Text Encode with the headless Load CLIP (the pack's T5) or with
ComfyUI's CLIP (stood in by an object with its two methods), into the sampling nodes."""
import logging

import pytest
import torch
from safetensors.torch import save_file

import cascade_core as cc
from cascade_core.models.t5 import T5Config, T5Encoder
from nodes import comfy_bridge as bridge
from nodes.headless.clip_loader import CLIPLoader
from nodes.sampling_nodes import CDMBaseSampler
from nodes.stage_nodes import CDMStageLoader
from nodes.text_nodes import CDMTextEncode
from tests.test_deepfloyd import FIXTURES, write_download

T5_FIXTURE = FIXTURES.parent / "t5"


@pytest.fixture
def download(tmp_path):
    """IF's download as a headless user has it: the stage I fixture's unet/, a random T5 of its
    text width (48) in text_encoder/, and the fixture tokenizer in tokenizer/."""
    folder = write_download(tmp_path, "stage1_diffusers")
    torch.manual_seed(0)
    t5 = T5Encoder(T5Config(vocab_size=56, d_model=48, d_kv=12, d_ff=96, num_layers=2,
                            num_heads=4))
    (folder / "text_encoder").mkdir()
    save_file({k: v.contiguous() for k, v in t5.state_dict().items()},
              str(folder / "text_encoder" / "model.safetensors"))
    (folder / "tokenizer").mkdir()
    (folder / "tokenizer" / "spiece.model").write_bytes((T5_FIXTURE / "spiece.model").read_bytes())
    bridge.add_stage_dir(tmp_path)
    yield folder.name
    bridge.remove_stage_dir(tmp_path)


def sample(stage, text, **widgets):
    values = dict(seed=3, steps=2, sampler_name="ddpm", spacing="ddim", class_name="random",
                  guidance=4.0, batch_size=2, truncate_s=0.0, dtype="fp32")
    values.update(widgets)
    return CDMBaseSampler().sample(stage, text=text, **values)[0]


def test_a_prompt_through_the_headless_t5_drives_an_if_stage(download):
    (clip,) = CLIPLoader().load_clip(f"{download}/text_encoder")
    (text,) = CDMTextEncode().encode(clip, "A red fox in the snow", "")
    assert text.tokens.shape == text.negative.shape == (1, 77, 48)
    (stage,) = CDMStageLoader().load(f"{download}/unet/config.json")
    a, b = sample(stage, text), sample(stage, text)
    assert a.shape == (2, 32, 32, 3) and torch.equal(a, b)
    assert 0.0 <= float(a.min()) and float(a.max()) <= 1.0
    (other,) = CDMTextEncode().encode(clip, "a harbour at dusk", "")
    assert not torch.equal(sample(stage, other), a)  # the prompt reaches the image
    assert cc.default_threshold(stage.stage.config) == 1.5


def test_comfyuis_clip_is_brought_to_77_tokens(caplog):
    class ComfyClip:  # what the node uses of ComfyUI's CLIP
        def __init__(self, length):
            self.length = length

        def tokenize(self, text):
            return {"t5xxl": [[(1, 1.0)] * self.length]}

        def encode_from_tokens(self, tokens, return_dict=False):
            return {"cond": torch.ones(1, self.length, 48)}

    (short,) = CDMTextEncode().encode(ComfyClip(10), "a fox", "")
    assert short.tokens.shape == (1, 77, 48) and float(short.tokens[0, 10:].abs().sum()) == 0
    with caplog.at_level(logging.WARNING, logger="cascade_core"):
        (long,) = CDMTextEncode().encode(ComfyClip(154), "a fox " * 60, "")
    assert long.tokens.shape == (1, 77, 48) and "154 tokens" in caplog.text
    assert "cannot be run with IF's padding mask" in caplog.text


def test_bad_prompts_are_sentences(download, tiny_cascade):
    (clip,) = CLIPLoader().load_clip(f"{download}/text_encoder")
    (text,) = CDMTextEncode().encode(clip, "a fox", "")
    (stage,) = CDMStageLoader().load(f"{download}/unet/config.json")
    with pytest.raises(cc.CascadeError, match="conditioned on text: give it a prompt"):
        sample(stage, None)
    bridge.add_stage_dir(tiny_cascade)
    try:
        (ours,) = CDMStageLoader().load("cifar10-base16.safetensors")
        with pytest.raises(cc.CascadeError, match="takes no text"):
            sample(ours, text, class_name="0", guidance=1.0, sampler_name="euler",
                   spacing="karras")
    finally:
        bridge.remove_stage_dir(tiny_cascade)
    with pytest.raises(cc.CheckpointError, match="no text encoder 'nope'"):
        CLIPLoader().load_clip("nope")
    with pytest.raises(cc.CascadeError, match="needs a text encoder"):
        CDMTextEncode().encode(object(), "a fox", "")


def test_inside_comfyui_the_node_runs_comfyuis_t5_with_ifs_mask(download):
    """A CLIP shaped like ComfyUI's (a tokenizer giving padded (id, weight) pairs, and its T5 at
    ``cond_stage_model.t5xxl.transformer``): the node's embeddings equal the pack's exact IF
    encoding with the same weights, and differ from running that T5 without the mask."""
    (ours,) = CLIPLoader().load_clip(f"{download}/text_encoder")

    class ComfyT5(torch.nn.Module):  # ComfyUI's T5.forward(input_ids, attention_mask, ...)
        def __init__(self, encoder):
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids, attention_mask, dtype=None):
            return self.encoder(input_ids, attention_mask), None

    class ComfyClip:
        def __init__(self):
            self.cond_stage_model = torch.nn.Module()
            self.cond_stage_model.t5xxl = torch.nn.Module()
            self.cond_stage_model.t5xxl.transformer = ComfyT5(ours.encoder)

        def tokenize(self, text):  # ComfyUI's sd3 T5 tokenizer: </s>, padded to at least 77
            ids = ours.tokenizer.sp.EncodeAsIds(text) + [1]
            return {"t5xxl": [[(i, 1.0) for i in ids + [0] * (77 - len(ids))]]}

        def encode_from_tokens(self, tokens, return_dict=False):
            ids = torch.tensor([[t[0] for t in tokens["t5xxl"][0]]])
            return {"cond": ours.encoder(ids, torch.ones_like(ids))}  # no mask, as ComfyUI

    prompt = "A red fox in the snow"
    (text,) = CDMTextEncode().encode(ComfyClip(), prompt, "")
    exact = ours.encode(prompt)
    assert torch.allclose(text.tokens, exact.tokens, atol=1e-6)
    assert torch.allclose(text.negative, exact.negative, atol=1e-6)
    unmasked = ComfyClip().encode_from_tokens(ComfyClip().tokenize(prompt.lower()))["cond"]
    assert float((unmasked.detach() - exact.tokens).abs().max()) > 1e-3


def test_inside_comfyui_a_long_prompt_is_cut_naming_the_dropped_words(download, caplog):
    (ours,) = CLIPLoader().load_clip(f"{download}/text_encoder")

    class Decoder:  # ComfyUI's CLIP keeps its T5 tokenizer at tokenizer.t5xxl.tokenizer
        def decode(self, ids):
            return ours.tokenizer.sp.DecodeIds(list(ids))

    class ComfyClip:
        def __init__(self):
            self.tokenizer = torch.nn.Module()
            self.tokenizer.t5xxl = torch.nn.Module()
            self.tokenizer.t5xxl.tokenizer = Decoder()
            self.cond_stage_model = torch.nn.Module()
            self.cond_stage_model.t5xxl = torch.nn.Module()
            self.cond_stage_model.t5xxl.transformer = lambda ids, mask, dtype=None: (
                ours.encoder(ids, mask), None)

        def tokenize(self, text):
            return {"t5xxl": [[(i, 1.0) for i in ours.tokenizer.sp.EncodeAsIds(text) + [1]]]}

        def encode_from_tokens(self, tokens, return_dict=False):
            raise AssertionError("the masked path does not use ComfyUI's own encoding")

    clip = ComfyClip()
    clip.cond_stage_model.t5xxl.transformer.parameters = ours.encoder.parameters
    long = " ".join(["a watercolour of mountains above a quiet lake"] * 12)
    with caplog.at_level(logging.WARNING, logger="cascade_core"):
        (text,) = CDMTextEncode().encode(clip, long, "")
    assert text.tokens.shape == (1, 77, 48)
    assert "is cut" in caplog.text and "lake" in caplog.text
