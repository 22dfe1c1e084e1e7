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
