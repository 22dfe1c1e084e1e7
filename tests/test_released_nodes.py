"""Released ADM files in the nodes: workflows 05/06, the classifier loader, class names, ADM-U
conditioning rules. Tiny ADM-layout stages stand in for the real files (the reference fixtures,
converted with the fixture overrides)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from fixtures.adm.random_weights import random_state
from PIL import Image
from safetensors import safe_open

import cascade_core as cc
from cascade_core.formats.convert import convert
from nodes import NODE_CLASS_MAPPINGS
from nodes.headless.executor import run
from nodes.headless.graph import WorkflowError
from nodes.stage_nodes import LoadedStage, describe

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "adm"
WF05 = ROOT / "workflows" / "05_imagenet_64_to_256.json"
WF06 = ROOT / "workflows" / "06_upscale_photo_x4.json"
WF11 = ROOT / "workflows" / "11_imagenet_regions_wide.json"
TWO = cc.SamplingPlan(steps=2)


@pytest.fixture(scope="module")
def tiny_adm(tmp_path_factory):
    """The fixture base, classifier and upsampler, converted to stage files of this pack."""
    d = tmp_path_factory.mktemp("tiny_adm")
    names = {"adm64_new_order": "tiny_base.safetensors", "adm_classifier": "tiny_clf.safetensors",
             "adm_upsampler": "tiny_up.safetensors"}
    for fixture, out in names.items():
        with safe_open(str(FIXTURES / f"{fixture}.safetensors"), framework="pt") as f:
            meta = f.metadata()
        torch.save(random_state(json.loads(meta["shapes"]), int(meta["seed"])), d / "src.pt")
        overrides = json.loads(meta["overrides"])
        if fixture == "adm_classifier":
            overrides["schedule"] = "cosine"  # the schedule of the base it guides
        convert(d / "src.pt", d / out, dtype="fp32", overrides=overrides)
    return d


def test_workflow_05_guided_base_then_adm_u(tiny_adm, tmp_path):
    sets = ["steps=2", "1.stage_name=tiny_base.safetensors",
            "2.classifier_name=tiny_clf.safetensors", "3.stage_name=tiny_up.safetensors",
            "4.class_name=3"]
    saved = run(WF05, tmp_path, sets, stage_dirs=[tiny_adm])
    sizes = sorted(Image.open(p).size for p in saved)
    assert sizes == [(16, 16), (64, 64)]  # the base preview, the x4 upsampled image


def test_workflow_06_photo_x4_in_tiles(tiny_adm, tmp_path):
    sets = ["steps=2", "2.stage_name=tiny_up.safetensors", "4.class_name=3", "4.tile_size=64"]
    saved = run(WF06, tmp_path, sets, stage_dirs=[tiny_adm], input_dirs=[ROOT / "workflows"])
    assert [Image.open(p).size for p in saved] == [(128, 128)]


def test_workflow_11_two_classes_as_regions_then_adm_u_follows_them(tiny_adm, tmp_path):
    """The wide ImageNet canvas on the ADM-layout fixtures: 64 x 128 from two regions, ADM-U
    (no null class: every member needs its class) following them to 256 x 512."""
    sets = ["steps=2", "1.stage_name=tiny_base.safetensors", "5.stage_name=tiny_up.safetensors",
            "2.class_name=3", "3.class_name=5"]
    saved = run(WF11, tmp_path, sets, stage_dirs=[tiny_adm])
    assert sorted(Image.open(p).size for p in saved) == [(128, 64), (512, 256)]


@pytest.mark.parametrize("path,files", [
    (WF05, ("64x64_diffusion.pt", "64x64_classifier.pt", "64_256_upsampler.pt")),
    (WF06, ("64_256_upsampler.pt",)), (WF11, ("64x64_diffusion.pt", "64_256_upsampler.pt"))])
def test_released_workflows_without_the_files_say_where_to_get_them(path, files, tmp_path):
    with pytest.raises(WorkflowError) as err:
        run(path, tmp_path, ["steps=2"])
    for f in files:
        assert f"download https://openaipublic.blob.core.windows.net/diffusion/jul-2021/{f}" in str(
            err.value)
    wf = json.loads(path.read_text())
    assert sorted(m["name"] for m in wf["models"]) == sorted(files)  # frontend dialog
    note = next(n for n in wf["nodes"] if n["type"] == "Note")["widgets_values"][0]
    assert all(f in note for f in files)
    assert not (tmp_path / "cdm").exists()  # nothing written


def test_adm_u_refuses_an_augmented_condition(tiny_adm):
    up = cc.load_stage(tiny_adm / "tiny_up.safetensors")
    image = torch.zeros(1, 3, 4, 4)
    cond = cc.make_condition(image, 0.1, cc.NoiseSource.from_seed(0, 1))
    with pytest.raises(cc.CascadeError, match="no augmentation-level input.*s = 0.1"):
        cc.super_resolve(up, TWO, cc.Conditioning.for_upsampling(cond, torch.tensor([1])), seed=0)
    clean = cc.make_condition(image, 0.0, cc.NoiseSource.from_seed(0, 1))
    with pytest.raises(cc.CascadeError, match="every image needs a class"):
        cc.super_resolve(up, TWO, cc.Conditioning.for_upsampling(clean), seed=0)
    out = cc.super_resolve(up, TWO, cc.Conditioning.for_upsampling(clean, torch.tensor([1])),
                           seed=0)
    assert out.shape == (1, 3, 16, 16)


def test_classifier_guidance_checks_size_and_classes(tiny_adm):
    base = cc.load_stage(tiny_adm / "tiny_base.safetensors")
    clf = cc.load_classifier(tiny_adm / "tiny_clf.safetensors")
    labels = torch.tensor([1, 2])
    ddim = dict(steps=3, sampler="ddim", spacing="ddim")
    guided, _ = cc.generate(base, cc.SamplingPlan(**ddim, classifier=clf, classifier_scale=5.0),
                            cc.Conditioning.for_base(2, labels), seed=0)
    plain, _ = cc.generate(base, cc.SamplingPlan(**ddim), cc.Conditioning.for_base(2, labels),
                           seed=0)
    assert (guided - plain).abs().max() > 1e-3
    with pytest.raises(cc.CascadeError, match="trained at another size"):
        cc.guide_check(base, _resized(clf, 32))


def _resized(clf, size):
    from dataclasses import replace

    with torch.device("meta"):
        return cc.NoisyClassifier(replace(clf.config, resolution=size))


def test_imagenet_names_indices_and_suggestions():
    cfg = cc.StageConfig(role="base", resolution=64, num_classes=1000, null_class=False,
                         class_names=cc.formats.adm_table.imagenet_class_names(),
                         unet=cc.UNetConfig(base_channels=8, channel_mult=(1,),
                                            attention_resolutions=()))
    labels = cc.parse_classes(cfg, "golden retriever, 207, Crane Bird, construction crane", 4)
    assert labels.tolist() == [207, 207, 134, 517]
    with pytest.raises(cc.CascadeError, match=r"class index out of range.*0\.\.999.*1000"):
        cc.parse_classes(cfg, "1000", 1)
    with pytest.raises(cc.CascadeError, match="such as .'Golden Retriever'") as err:
        cc.parse_classes(cfg, "golden retreiver", 1)
    assert "tench" not in str(err.value)  # the nearest names, not all 1000


def test_stage_info_lists_imagenet_names(tiny_adm):
    stage = cc.load_stage(tiny_adm / "tiny_up.safetensors")
    text = describe(LoadedStage(stage, str(tiny_adm / "tiny_up.safetensors")))
    assert "augmentation: none" in text
    from dataclasses import replace

    names = cc.formats.adm_table.imagenet_class_names()
    with torch.device("meta"):
        big = cc.Stage(replace(stage.config, num_classes=1000, class_names=names))
    text = describe(LoadedStage(big, "x.pt"))
    assert "  517: construction crane" in text and "  999: toilet paper" in text


def test_classifier_loader_node_and_pt_files_are_listed(tiny_adm, monkeypatch):
    from nodes import comfy_bridge

    monkeypatch.setattr(comfy_bridge, "_extra_dirs", [tiny_adm])
    torch.save({"w": torch.zeros(1)}, tiny_adm / "something.pt")
    assert "something.pt" in comfy_bridge.stage_files()
    (clf,) = NODE_CLASS_MAPPINGS["CDMClassifierLoader"]().load("tiny_clf.safetensors")
    assert isinstance(clf.stage, cc.NoisyClassifier)
    with pytest.raises(cc.CheckpointError, match="is not a noisy classifier"):
        NODE_CLASS_MAPPINGS["CDMClassifierLoader"]().load("tiny_base.safetensors")


def test_guidance_works_with_a_classifier_loaded_in_inference_mode(tiny_adm):
    """ComfyUI runs every node under torch.inference_mode: a classifier loaded (or moved) there
    has inference-tensor weights, which autograd refuses unless they are replaced."""
    base = cc.load_stage(tiny_adm / "tiny_base.safetensors")
    with torch.inference_mode():
        clf = cc.load_classifier(tiny_adm / "tiny_clf.safetensors")
        assert any(p.is_inference() for p in clf.parameters())
        plan = cc.SamplingPlan(steps=2, sampler="ddim", spacing="ddim", classifier=clf,
                               classifier_scale=2.0)
        guided, _ = cc.generate(base, plan, cc.Conditioning.for_base(1, torch.tensor([1])), seed=0)
    assert torch.isfinite(guided).all()


def test_each_loader_lists_only_files_of_its_kind(tiny_adm, monkeypatch, tmp_path):
    from nodes import comfy_bridge, file_kinds

    folder = tmp_path / "stages"
    folder.mkdir()
    for name in ("tiny_base.safetensors", "tiny_clf.safetensors", "tiny_up.safetensors"):
        (folder / name).write_bytes((tiny_adm / name).read_bytes())
    with safe_open(str(FIXTURES / "adm_classifier.safetensors"), framework="pt") as f:
        meta = f.metadata()
    # a classifier .pt under a name OpenAI's table does not know: told by its keys
    torch.save(random_state(json.loads(meta["shapes"]), int(meta["seed"])),
               folder / "my_guide.pt")
    (folder / "notes.safetensors").write_bytes(b"not a safetensors file")
    monkeypatch.setattr(comfy_bridge, "_extra_dirs", [folder])
    monkeypatch.setattr(comfy_bridge, "PACK_WEIGHTS", tmp_path / "none")
    stages = NODE_CLASS_MAPPINGS["CDMStageLoader"].INPUT_TYPES()["required"]["stage_name"][0]
    guides = NODE_CLASS_MAPPINGS["CDMClassifierLoader"].INPUT_TYPES()["required"][
        "classifier_name"][0]
    assert guides == ["my_guide.pt", "tiny_clf.safetensors"]
    assert stages == ["notes.safetensors", "tiny_base.safetensors", "tiny_up.safetensors"]
    reads = []
    monkeypatch.setattr(file_kinds, "_read_kind", lambda p: reads.append(p) or "stage")
    comfy_bridge.stage_files("classifier")
    assert reads == []  # cached by path, size and time
    (folder / "tiny_clf.safetensors").unlink()
    (folder / "my_guide.pt").unlink()
    with pytest.raises(cc.CheckpointError, match="no noisy classifier.*64x64_classifier.pt"):
        NODE_CLASS_MAPPINGS["CDMClassifierLoader"]().load("tiny_clf.safetensors")
