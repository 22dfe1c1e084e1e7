"""Text stages of our own: captions from a sidecar file, encoded once per run, trained with the
stage recipe, loaded by the nodes with a prompt (``train.captions``)."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import class_captions, tiny_text_encoder
from safetensors.torch import load_file

import cascade_core as cc
from cascade_core import TextConfig
from tests.test_train import FAST, ROOT, _env, make_folder, run
from train.captions import read_captions
from train.data import ImageSource
from train.stage_recipe import example_maker, stage_config

CIFAR = ROOT.parent / "shared" / "data" / "cifar10" / "train"


def mini_cifar(folder, per_class: int = 2):
    """The first images of each CIFAR-10 class, linked into a folder of the same layout."""
    for cls in sorted(p for p in CIFAR.iterdir() if p.is_dir()):
        (folder / cls.name).mkdir(parents=True)
        for image in sorted(cls.iterdir())[:per_class]:
            (folder / cls.name / image.name).symlink_to(image)
    return folder


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    """CIFAR-10 images captioned "a photo of a <class>", a tiny random T5, a 4-step text base
    stage."""
    d = tmp_path_factory.mktemp("text")
    data = mini_cifar(d / "data")
    encoder = tiny_text_encoder(d / "encoders")
    captions = class_captions(data, d / "captions.jsonl")
    out = d / "run"
    assert run("base", data, out, "--resolution", "8", "--steps", "4", "--checkpoint-every", "2",
               "--captions", str(captions), "--text-encoder", str(encoder)) == 0
    return {"data": data, "encoder": encoder, "captions": captions, "out": out, "dir": d}


def test_a_text_stage_trains_and_records_its_encoder(text_run):
    stage = cc.load_stage(text_run["out"] / "latest.safetensors")
    cfg = stage.config
    assert (cfg.text.width, cfg.text.encoder, cfg.num_classes) == (32, "tiny-t5", 0)
    assert cfg.training["text_encoder"]["name"] == "tiny-t5"
    assert cfg.unet.text_channels > 0 and cfg.unet.text_pool_heads > 0
    cache = list(text_run["out"].glob("captions-*.safetensors"))
    assert len(cache) == 1
    tokens = load_file(str(cache[0]))["tokens"]
    assert tokens.shape == (11, 77, 32)  # the empty caption and the ten class captions
    # the prompt reaches the output: two prompts, same noise, different images (after 4 steps
    # the text path has barely moved from its initialisation, so the difference is small)
    enc = cc.PromptEncoder.load(text_run["encoder"])
    plan = cc.SamplingPlan(steps=3)
    a, _ = cc.generate(stage, plan, cc.Conditioning.for_base(1, text=enc.encode("a photo of a "
                                                                                 "cat")), seed=0)
    b, _ = cc.generate(stage, plan, cc.Conditioning.for_base(1, text=enc.encode("a photo of a "
                                                                                 "ship")), seed=0)
    assert a.shape == (1, 3, 8, 8) and not torch.equal(a, b)


def test_the_nodes_load_it_with_a_prompt_and_refuse_another_encoder(text_run):
    from nodes import comfy_bridge as bridge
    from nodes.headless.clip_loader import CLIPLoader
    from nodes.sampling_nodes import CDMBaseSampler
    from nodes.stage_nodes import CDMStageLoader
    from nodes.text_nodes import CDMTextEncode

    folder = text_run["encoder"].parent
    (text_run["out"] / "latest.safetensors").replace(folder / "text16.safetensors")
    tiny_text_encoder(folder / "other", name="other-t5", seed=5)
    tiny_text_encoder(folder / "wide", name="wide-t5", width=64)
    bridge.add_stage_dir(folder)
    try:
        (stage,) = CDMStageLoader().load("text16.safetensors")

        def sample(encoder_file):
            (clip,) = CLIPLoader().load_clip(encoder_file)
            (text,) = CDMTextEncode().encode(clip, "a photo of a frog", "")
            return CDMBaseSampler().sample(stage, seed=0, steps=2, sampler_name="euler",
                                           spacing="karras", class_name="random", guidance=2.0,
                                           batch_size=2, truncate_s=0.0, dtype="fp32", text=text)
        image, _ = sample("tiny-t5.safetensors")
        assert image.shape == (2, 8, 8, 3) and bool(torch.isfinite(image).all())
        with pytest.raises(cc.CascadeError, match="another text encoder.*tiny-t5.*other-t5"):
            sample("other/other-t5.safetensors")
        with pytest.raises(cc.CascadeError, match="another text encoder.*width 32.*width 64"):
            sample("wide/wide-t5.safetensors")
    finally:
        bridge.remove_stage_dir(folder)
        (folder / "text16.safetensors").replace(text_run["out"] / "latest.safetensors")


def test_resume_reads_the_cached_captions_and_refuses_another_encoder(text_run, capfd):
    out = text_run["out"]
    assert run("base", text_run["data"], out, "--resolution", "8", "--steps", "6", "--resume",
               "--captions", str(text_run["captions"]), "--text-encoder",
               str(text_run["encoder"])) == 0
    said = capfd.readouterr().out
    assert "encoding" not in said and "encoded by tiny-t5" in said
    other = tiny_text_encoder(text_run["dir"] / "other", name="other-t5", seed=5)
    assert run("base", text_run["data"], out, "--resolution", "8", "--steps", "8", "--resume",
               "--captions", str(text_run["captions"]), "--text-encoder", str(other)) == 2
    err = capfd.readouterr().err
    assert "text encoder changed" in err and "tiny-t5" in err and "other-t5" in err
    assert len(list(out.glob("captions-*.safetensors"))) == 1  # nothing encoded by the other


def test_two_processes_share_one_encoding_and_match_accumulation(text_run, tmp_path):
    """Rank 0 encodes, rank 1 reads the same file; the weights equal one process accumulating
    the two micro-batches, bit for bit."""
    common = ["--resolution", "8", "--steps", "2", "--batch-size", "4", "--checkpoint-every",
              "100", "--caption-dropout", "0.5", "--captions", str(text_run["captions"]),
              "--text-encoder", str(text_run["encoder"])]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    res = subprocess.run([*torchrun, "-m", "train.stage1", "--data", str(text_run["data"]),
                          "--out", str(tmp_path / "ddp"), *FAST, *common], cwd=ROOT, env=_env(),
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("encoding 11 distinct caption(s)") == 1
    assert run("base", text_run["data"], tmp_path / "acc", *common, "--grad-accum", "2") == 0
    a = load_file(str(tmp_path / "ddp" / "latest.safetensors"))
    b = load_file(str(tmp_path / "acc" / "latest.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_caption_dropout_drops_captions_to_the_empty_one():
    from train.cli import parse
    cfg, _, _ = parse("base", "test", ["--data", "d", "--captions", "c.jsonl", "--text-encoder",
                                       "t.safetensors", "--caption-dropout", "1.0",
                                       "--label-dropout", "0.0"])
    scfg = stage_config(cfg, 0, (), text=TextConfig(width=32, encoder="tiny-t5"))
    maker = example_maker(cfg, scfg)
    image = np.zeros((16, 16, 3), np.uint8)
    assert all(int(maker(image, 2, key)["label"]) == -1 for key in range(8))


def write(path, lines):
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n"
                            for line in lines))
    return path


def test_caption_files_are_checked_naming_what_is_wrong(tmp_path):
    data = make_folder(tmp_path / "data", classes=("red", "blue"), per_class=2)
    source = ImageSource(data)
    images = ["blue/0.png", "blue/1.png", "red/0.png", "red/1.png"]
    ok = [{"image": i, "caption": "" if i == "red/1.png" else f"a {i[:-6]}"} for i in images]
    captions = read_captions(write(tmp_path / "ok.jsonl", ok), source)
    assert captions == ["a blue", "a blue", "a red", ""]  # "" is allowed: unconditional
    cases = {
        "no caption for 1 of 4 image": ok[:3],
        "the caption of red/1.png is missing": [*ok[:3], {"image": "red/1.png", "caption": None}],
        r"names 1 image\(s\) that are not in": [*ok, {"image": "green/0.png", "caption": "x"}],
        "two captions for blue/0.png": [*ok, ok[0]],
        "line 2 is not JSON": [ok[0], "{not json", *ok[1:]],
        "line 1 names no image": [{"caption": "x"}, *ok],
    }
    for message, lines in cases.items():
        with pytest.raises(cc.CascadeError, match=message):
            read_captions(write(tmp_path / "bad.jsonl", lines), source)
    with pytest.raises(cc.CascadeError, match="captions file not found"):
        read_captions(tmp_path / "none.jsonl", source)


def test_captions_and_encoder_come_together(tmp_path, capsys):
    from train.cli import main
    for flags, found in ((["--captions", "c.jsonl"], "--captions only"),
                         (["--text-encoder", "t.safetensors"], "--text-encoder only")):
        assert main("base", "test", ["--data", str(tmp_path), *flags]) == 2
        err = capsys.readouterr().err
        assert "needs its captions and the encoder" in err and found in err
