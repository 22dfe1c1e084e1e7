"""DeepFloyd IF's stages load as downloaded, in both released layouts, and compute what the
reference code computes.

The fixtures (``tests/fixtures/deepfloyd/make_fixtures.py``) hold, per stage and layout, the
config of a shrunk model with the released structure, the seed of its randomised weights, its
inputs and the reference's outputs. Each test writes the download as a user gets it (a diffusers
``unet/`` folder, in one file, its fp16 variant or shards; or ``config.yml`` with
``pytorch_model.bin``), loads it through ``cc.load_stage`` and compares.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch
from fixtures.deepfloyd.random_weights import random_state
from safetensors import safe_open
from safetensors.torch import save_file

import cascade_core as cc
from cascade_core.formats import deepfloyd_config, deepfloyd_keys
from cascade_core.formats.adm import fit_shapes

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "deepfloyd"
CASES = [f"{s}_{f}" for s in ("stage1", "stage2") for f in ("diffusers", "release")]


def fixture(name: str):
    with safe_open(str(FIXTURES / f"{name}.safetensors"), framework="pt") as f:
        meta, io = f.metadata(), {k[3:]: f.get_tensor(k) for k in f.keys()}
    state = random_state(json.loads(meta["shapes"]), int(meta["seed"]))
    return json.loads(meta["config"]), state, io


def yaml_line(key, value) -> str:
    text = str(value).lower() if isinstance(value, bool) else json.dumps(value)
    return f"  {key}: {text}"


def write_download(root: Path, name: str, variant: str = "single") -> Path:
    """The fixture as downloaded into ``root``; returns the release's folder."""
    config, state, _ = fixture(name)
    folder = root / "IF-test-v1.0"
    if name.endswith("release"):
        folder.mkdir(parents=True)
        lines = ["params:", *(yaml_line(k, v) for k, v in config.items())]
        (folder / "config.yml").write_text("\n".join(lines) + "\n")
        torch.save(state, folder / "pytorch_model.bin")
        return folder
    unet = folder / "unet"
    unet.mkdir(parents=True)
    (unet / "config.json").write_text(json.dumps(config))
    if variant == "fp16":
        save_file({k: v.half() for k, v in state.items()},
                  str(unet / "diffusion_pytorch_model.fp16.safetensors"))
    elif variant == "shards":
        keys = sorted(state)
        halves = {"diffusion_pytorch_model-00001-of-00002.safetensors": keys[::2],
                  "diffusion_pytorch_model-00002-of-00002.safetensors": keys[1::2]}
        for shard, part in halves.items():
            save_file({k: state[k] for k in part}, str(unet / shard))
        index = {"weight_map": {k: s for s, part in halves.items() for k in part}}
        (unet / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(index))
    else:
        save_file(state, str(unet / "diffusion_pytorch_model.safetensors"))
    return folder


def run(stage, io: dict) -> torch.Tensor:
    """Our network on the fixture's inputs: stage II gets the noise level as s = level / 1000
    and its low-res image already at full size, as the reference's network does."""
    extra = {}
    if "cond" in io:
        extra = dict(cond=io["cond"], aug_level=io["noise_level"].float() / 1000)
    with torch.no_grad():
        return stage(io["x"], io["t"], text=io["text"], **extra).float()


@pytest.mark.parametrize("name", CASES)
def test_eps_and_learned_variance_match_the_reference(name, tmp_path):
    _, _, io = fixture(name)
    stage = cc.load_stage(write_download(tmp_path, name))
    assert stage.config.role == ("sr" if name.startswith("stage2") else "base")
    assert stage.config.learn_sigma and stage.config.text.width == 48
    out = run(stage, io)
    torch.testing.assert_close(out[:, :3], io["out"][:, :3], atol=1e-4, rtol=1e-4)  # eps
    torch.testing.assert_close(out[:, 3:], io["out"][:, 3:], atol=1e-4, rtol=1e-4)  # variance


@pytest.mark.parametrize("variant", ["fp16", "shards"])
def test_diffusers_variants_load_the_same_stage(variant, tmp_path):
    name = "stage2_diffusers"
    _, _, io = fixture(name)
    root = write_download(tmp_path, name, variant)
    stage = cc.load_stage(root / "unet" / ("diffusion_pytorch_model.fp16.safetensors"
                                           if variant == "fp16" else
                                           "diffusion_pytorch_model.safetensors.index.json"))
    atol = 0.05 if variant == "fp16" else 1e-4  # fp16 weights, computed in fp32
    torch.testing.assert_close(run(stage, io), io["out"], atol=atol, rtol=0.02)


def test_negative_control_one_option_changed_fails_the_tolerance(tmp_path):
    """The comparison can fail: the same weights with the pooled text left out of the embedding
    (stage I), or without stage II's scaled residual connections, miss by far more than the
    tolerance the tests use."""
    _, _, io = fixture("stage1_diffusers")
    stage = cc.load_stage(write_download(tmp_path / "a", "stage1_diffusers"))
    stage.net.text.pool = None
    assert float((run(stage, io) - io["out"]).abs().max()) > 0.01
    config, _, io = fixture("stage2_release")
    folder = write_download(tmp_path / "b", "stage2_release")
    text = (folder / "config.yml").read_text().replace("scale_skip_connection: true",
                                                       "scale_skip_connection: false")
    (folder / "config.yml").write_text(text)
    stage = cc.load_stage(folder)
    assert stage.config.unet.resblock_scale == 1.0
    assert float((run(stage, io) - io["out"]).abs().max()) > 0.01


def manifests() -> dict:
    with gzip.open(FIXTURES / "manifests.json.gz", "rt") as f:
        return json.load(f)


@pytest.mark.parametrize("name", sorted(manifests()))
def test_the_released_shapes_are_built_exactly(name):
    """The keys and shapes the reference constructors give for the released configs (on the meta
    device) are exactly those of the network our loader builds from the same config."""
    entry = manifests()[name]
    meta = {k: torch.empty(v, device="meta") for k, v in entry["shapes"].items()}
    if name.endswith("diffusers"):
        cfg = deepfloyd_config.from_diffusers(entry["config"], name)
        state = deepfloyd_keys.from_diffusers(meta, cfg)
    else:
        cfg = deepfloyd_config.from_release(entry["config"], name)
        state = deepfloyd_keys.from_release(meta)
    with torch.device("meta"):
        stage = cc.Stage(cfg)
    expected = stage.state_dict()
    fitted = fit_shapes({f"net.{k}": v for k, v in state.items()}, expected, name)
    assert set(fitted) == set(expected)
    assert all(tuple(fitted[k].shape) == tuple(expected[k].shape) for k in expected)
    params = sum(v.numel() for v in expected.values())
    assert params > (4e9 if "IF-I-XL" in name else 1e9)  # 4.3B and 1.2B parameters


def test_a_stage_of_the_other_role_is_refused_naming_the_file(tmp_path):
    one = write_download(tmp_path / "one", "stage1_release")
    two = write_download(tmp_path / "two", "stage2_diffusers")
    with pytest.raises(cc.CheckpointError, match=r"IF-test-v1\.0 .* is a base 32px stage.*"
                                                 r"expected a sr stage"):
        cc.load_stage(one, role="sr")
    with pytest.raises(cc.CheckpointError, match="is a sr 8->32px stage.*expected a base stage"):
        cc.load_stage(two / "unet", role="base")


def test_bad_downloads_are_refused_with_a_sentence(tmp_path):
    folder = write_download(tmp_path / "shards", "stage1_diffusers", "shards") / "unet"
    (folder / "diffusion_pytorch_model-00002-of-00002.safetensors").unlink()
    with pytest.raises(cc.CheckpointError, match="00002-of-00002.safetensors: a shard listed .* "
                                                 "is missing"):
        cc.load_stage(folder)
    folder = write_download(tmp_path / "wrong", "stage1_diffusers") / "unet"
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "layers_per_block": 1}))
    with pytest.raises(cc.CheckpointError, match="do not match the file's own config"):
        cc.load_stage(folder)
    (folder / "config.json").write_text(json.dumps(
        {**config, "down_block_types": ["CrossAttnDownBlock2D"] * 4}))
    with pytest.raises(cc.CheckpointError, match="block type CrossAttnDownBlock2D is not "
                                                 "supported"):
        cc.load_stage(folder)
    release = write_download(tmp_path / "bin", "stage1_release")
    torch.save({"model": {"w": torch.zeros(1)}, "step": 3}, release / "pytorch_model.bin")
    with pytest.raises(cc.CheckpointError, match="pytorch_model.bin holds more than tensors"):
        cc.load_stage(release)
    (release / "config.yml").write_text("params:\n  image_size: 32\nmodel: {nested: 1}\n")
    with pytest.raises(cc.CheckpointError, match="config.yml line 3 is not a 'key: value'"):
        cc.load_stage(release)


def test_existing_stages_have_no_text_and_text_stages_need_it(tmp_path):
    """A stage of ours has no text options at all (its outputs are unchanged: bench.golden);
    an IF stage refuses to run without its prompt embeddings or with the wrong width."""
    ours = cc.load_stage(Path(__file__).resolve().parents[1] / "weights" /
                         "cifar10-base16.safetensors")
    assert ours.config.text.width == 0 and ours.net.text is None
    _, _, io = fixture("stage1_release")
    stage = cc.load_stage(write_download(tmp_path, "stage1_release"))
    with pytest.raises(cc.CascadeError, match="conditioned on text"):
        stage(io["x"], io["t"])
    with pytest.raises(cc.CascadeError, match=r"text embeddings of the wrong shape: expected "
                                              r"\(2, L, 48\)"):
        stage(io["x"], io["t"], text=io["text"][..., :40])


@pytest.mark.parametrize("name", ["stage1_release", "stage2_diffusers"])
def test_convert_writes_a_stage_of_ours_that_computes_the_same(name, tmp_path):
    from cascade_core.formats.convert import main
    _, _, io = fixture(name)
    src = write_download(tmp_path / "download", name)
    out = tmp_path / "if.safetensors"
    assert main([str(src), str(out), "--dtype", "fp32"]) == 0
    ours = cc.load_stage(out)
    assert ours.config == cc.load_stage(src).config and ours.config.text.encoder == "t5-v1_1-xxl"
    torch.testing.assert_close(run(ours, io), io["out"], atol=1e-4, rtol=1e-4)
    assert main([str(src), str(tmp_path / "x.safetensors"), "--set", "role=base"]) == 2


def test_the_stage_loader_lists_an_if_download_once_and_loads_it(tmp_path):
    """Put where the README says (a stage folder, the download's own folder name kept), each
    IF stage is offered once, by its config, and the pipeline's other files are not."""
    from nodes import NODE_CLASS_MAPPINGS
    from nodes import comfy_bridge as bridge
    write_download(tmp_path / "a", "stage1_diffusers")
    write_download(tmp_path / "b", "stage2_release")
    encoder = tmp_path / "a" / "IF-test-v1.0" / "text_encoder"
    encoder.mkdir()
    save_file({"w": torch.zeros(1)}, str(encoder / "model-00001-of-00002.safetensors"))
    for folder in ("a", "b"):
        bridge.add_stage_dir(tmp_path / folder)
    try:
        names = bridge.stage_files()
        assert "IF-test-v1.0/unet/config.json" in names and "IF-test-v1.0/config.yml" in names
        assert not any("text_encoder" in n or "diffusion_pytorch_model" in n for n in names)
        (loaded,) = NODE_CLASS_MAPPINGS["CDMStageLoader"]().load("IF-test-v1.0/config.yml")
        assert loaded.stage.config.role == "sr" and loaded.stage.name == "IF-test-v1.0"
    finally:
        for folder in ("a", "b"):
            bridge.remove_stage_dir(tmp_path / folder)



def test_fp32_text_embeddings_drive_a_bf16_stage(tmp_path):
    """An encoder's fp32 output into a stage loaded in bf16 (as IF-I-XL is run): cast, not a
    dtype error, and close to the fp32 stage's answer."""
    _, _, io = fixture("stage1_diffusers")
    root = write_download(tmp_path, "stage1_diffusers")
    ref = run(cc.load_stage(root), io)
    half = cc.load_stage(root, dtype="bf16")
    bf16_io = {**io, "x": io["x"].bfloat16()}  # text stays fp32
    out = run(half, bf16_io)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert 0 < (out - ref).abs().max() < 0.2
