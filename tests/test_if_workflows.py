"""Workflows 08 and 09 in the headless runner, on tiny stand-ins of IF's files: a text base stage
of the IF-I fixture's kind at 8 px, the IF-II fixture (8 -> 32 px), a random T5 of their text
width and the fixture tokenizer; and, without the files, the missing-file errors with their
download hints and licence."""
import dataclasses
import json
import shutil

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import cascade_core as cc
from cascade_core.models.t5 import T5Config, T5Encoder
from nodes.run_workflow import main
from tests.test_deepfloyd import write_download
from tests.test_text_nodes import T5_FIXTURE
from tests.test_workflows import ROOT

WF08 = ROOT / "workflows" / "08_if_prompt_to_256.json"
WF09 = ROOT / "workflows" / "09_if_s_search.json"


@pytest.fixture(scope="module")
def if_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("if")
    two = write_download(root / "tmp2", "stage2_diffusers")
    shutil.move(str(two), str(root / "IF-II-test"))
    one = cc.load_stage(write_download(root / "tmp1", "stage1_diffusers") / "unet" / "config.json")
    torch.manual_seed(0)
    small = cc.Stage(dataclasses.replace(one.config, resolution=8))
    cc.save_stage(small, root / "IF-I-test.safetensors")
    torch.manual_seed(1)
    t5 = T5Encoder(T5Config(vocab_size=56, d_model=48, d_kv=12, d_ff=96, num_layers=2,
                            num_heads=4))
    save_file({k: v.contiguous() for k, v in t5.state_dict().items()},
              str(root / "t5xxl_test.safetensors"))
    shutil.copy(T5_FIXTURE / "spiece.model", root / "spiece.model")
    return root


def stand_ins(root) -> list:
    return ["--stages", str(root), "--set", "IF-I-XL (64px).stage_name=IF-I-test.safetensors",
            "--set", "IF-II-L (64->256px).stage_name=IF-II-test/unet/config.json",
            "--set", "T5-v1.1-XXL.clip_name=t5xxl_test.safetensors", "--set", "steps=2"]


def test_workflow_08_prompt_to_image_runs_on_stand_ins(if_files, tmp_path):
    assert main([str(WF08), "--out", str(tmp_path), *stand_ins(if_files)]) == 0
    saved = sorted((tmp_path / "cdm").glob("if_256_*.png"))
    assert len(saved) == 1 and Image.open(saved[0]).size == (32, 32)
    previews = list((tmp_path / "previews").rglob("*.png"))
    assert previews and Image.open(previews[0]).size == (8, 8)


def test_workflow_09_sweeps_ifs_noise_level_on_stand_ins(if_files, tmp_path):
    args = [str(WF09), "--out", str(tmp_path), *stand_ins(if_files),
            "--set", "x_values=0, 0.25, 0.5"]
    assert main(args) == 0
    grid = Image.open(next((tmp_path / "cdm").glob("if_s_search_*.png")))
    assert grid.size[0] >= 3 * 32  # three cells side by side, with labels


@pytest.mark.parametrize("path", [WF08, WF09], ids=lambda p: p.stem)
def test_without_the_files_the_error_says_where_to_get_them(path, tmp_path, capsys):
    assert main([str(path), "--out", str(tmp_path), "--stages", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "IF-I-XL-v1.0/unet/config.json" in err and "DeepFloyd IF licence" in err
    assert "huggingface.co/DeepFloyd/IF-I-XL-v1.0" in err


def test_the_workflows_name_their_files_for_the_frontends_missing_models_list():
    for path in (WF08, WF09):
        wf = json.loads(path.read_text())
        names = {m["name"]: m["directory"] for m in wf["models"]}
        assert names["t5xxl_fp16.safetensors"] == "text_encoders"
        assert names["IF-II-L-v1.0/unet/diffusion_pytorch_model.fp16.safetensors"] == "cascade"
        note = next(n for n in wf["nodes"] if n["type"] == "Note")["widgets_values"][0]
        assert "non-commercial" in note


def test_a_bf16_stage_file_stays_bf16_and_samples_natively(tmp_path):
    """IF-I-XL converted to bf16 is 8.6 GB, as float32 17: the Stage Loader keeps a stage of ours
    stored in bf16 in bf16, and sampling runs it without autocast (whose float32 layer norms
    would refuse bf16 weights); fp16-stored files (the shipped cascade) still load as float32."""
    from nodes import comfy_bridge as bridge
    from nodes.sampling_nodes import CDMBaseSampler
    from nodes.stage_nodes import CDMStageLoader
    from tests.helpers import tiny_stage

    cc.save_stage(tiny_stage(resolution=8), tmp_path / "b.safetensors", dtype="bf16")
    cc.save_stage(tiny_stage(resolution=8), tmp_path / "h.safetensors", dtype="fp16")
    bridge.add_stage_dir(tmp_path)
    try:
        (bf16,) = CDMStageLoader().load("b.safetensors")
        (fp16,) = CDMStageLoader().load("h.safetensors")
        assert bf16.stage.dtype == torch.bfloat16 and fp16.stage.dtype == torch.float32
        for dtype in ("auto", "bf16", "fp32"):
            info = {}
            image = CDMBaseSampler().sample(bf16, seed=0, steps=2, sampler_name="euler",
                                            spacing="karras", class_name="random", guidance=1.0,
                                            batch_size=2, truncate_s=0.0, dtype=dtype,
                                            unique_id="5", extra_pnginfo=info)[0]
            assert image.shape == (2, 8, 8, 3) and bool(torch.isfinite(image).all())
            assert info["cascade_precision"]["5"]["dtype"] == "bf16"  # what it computed in
    finally:
        bridge.remove_stage_dir(tmp_path)


def test_the_runner_drops_each_output_after_its_last_reader():
    from nodes.headless.executor import last_uses
    prompt = {"1": {"inputs": {}}, "2": {"inputs": {"clip": ["1", 0]}},
              "3": {"inputs": {"text": ["2", 0]}}, "4": {"inputs": {"text": ["2", 0],
                                                                    "x": ["3", 0]}}}
    assert last_uses(prompt, ["1", "2", "3", "4"]) == {"1": "2", "2": "4", "3": "4"}
