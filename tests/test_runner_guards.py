"""The headless runner refuses bad workflow files before any node runs, keeps every path inside its
folder, and lets no NaN or infinity pass silently."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cascade_core as cc
from nodes.headless import executor
from nodes.headless.executor import CLASSES, run
from nodes.headless.graph import WorkflowError, widget_positions

ROOT = Path(__file__).resolve().parents[1]
WF = {p.name[:2]: p for p in (ROOT / "workflows").glob("*.json")}


def write(tmp_path, key: str, changes=(), name="wf.json", edit=None) -> Path:
    """Workflow ``key`` with widget values changed: ``(node type, widget, value)`` triples."""
    wf = json.loads(WF[key].read_text())
    for node_type, widget, value in changes:
        for node in wf["nodes"]:
            if node["type"] == node_type:
                node["widgets_values"][widget_positions(node, CLASSES[node_type])[widget]] = value
    if edit:
        edit(wf)
    path = tmp_path / name
    path.write_text(json.dumps(wf))
    if key == "03":  # its example image sits beside the shipped workflow
        (tmp_path / "cdm_example_16px.png").write_bytes(
            (ROOT / "workflows" / "cdm_example_16px.png").read_bytes())
    return path


@pytest.fixture
def nothing_runs(monkeypatch):
    """Fails the test if any node's function is called."""
    def refuse(*args, **kwargs):
        raise AssertionError("a node ran although the workflow is invalid")
    monkeypatch.setattr(executor, "_node", refuse)


@pytest.mark.parametrize("widget,value,message", [
    ("batch_size", 0, r"node 3 \(CDMBaseSampler\): batch_size = 0: expected an integer in \[1, "),
    ("batch_size", -2, r"batch_size = -2: expected an integer in \[1, 256\]"),
    ("steps", -3, r"node 3 \(CDMBaseSampler\): steps = -3: expected an integer in \[0, 1000\]"),
    ("steps", "ten", r"steps = 'ten': expected an integer, found str"),
    ("guidance", float("nan"), r"guidance = nan: expected a finite number"),
    ("sampler_name", "plms", r"sampler_name = 'plms' is not one of"),
])
def test_widget_values_are_checked_before_anything_runs(tiny_cascade, tmp_path, nothing_runs,
                                                        widget, value, message):
    wf = write(tmp_path, "01", [("CDMBaseSampler", widget, value)])
    with pytest.raises(WorkflowError, match=message):
        run(wf, tmp_path / "out", stage_dirs=[tiny_cascade])
    assert not (tmp_path / "out").exists()


def test_every_problem_is_reported_at_once(tiny_cascade, tmp_path, nothing_runs):
    wf = write(tmp_path, "01", [("CDMBaseSampler", "steps", -1), ("CDMSuperResStage", "steps",
                                                                  5000),
                                ("CDMBaseSampler", "truncate_s", 2.0)])
    with pytest.raises(WorkflowError, match="3 problems") as err:
        run(wf, tmp_path / "out", stage_dirs=[tiny_cascade])
    text = str(err.value)
    assert "node 3 (CDMBaseSampler): steps = -1" in text
    assert "node 4 (CDMSuperResStage): steps" in text
    assert "truncate_s = 2.0" in text


def test_broken_graphs_are_named_not_tracebacks(tiny_cascade, tmp_path, nothing_runs):
    def dangle(wf):
        next(i for n in wf["nodes"] if n["type"] == "CDMBaseSampler"
             for i in n["inputs"] if i["name"] == "stage")["link"] = 999
    with pytest.raises(WorkflowError, match=r"node 3 \(CDMBaseSampler\): input 'stage' uses link "
                                            r"999, which the workflow's 'links' do not have"):
        run(write(tmp_path, "01", edit=dangle), tmp_path / "o", stage_dirs=[tiny_cascade])

    def as_dict(wf):
        wf["nodes"] = {str(n["id"]): n for n in wf["nodes"]}
    with pytest.raises(WorkflowError, match="'nodes' must be a list of node objects.*found dict"):
        run(write(tmp_path, "01", edit=as_dict), tmp_path / "o", stage_dirs=[tiny_cascade])

    def mute_loader(wf):
        wf["nodes"][0]["mode"] = 2
    with pytest.raises(WorkflowError, match="comes from node 1, which does not run"):
        run(write(tmp_path, "01", edit=mute_loader), tmp_path / "o", stage_dirs=[tiny_cascade])


def test_a_missing_shipped_stage_file_gets_its_hint(tmp_path, nothing_runs, monkeypatch):
    from nodes import comfy_bridge
    monkeypatch.setattr(comfy_bridge, "stage_files", lambda kind=None: ["other.safetensors"])
    with pytest.raises(WorkflowError, match="cifar10-base16.safetensors ships with the pack"):
        run(WF["01"], tmp_path / "out")


@pytest.mark.parametrize("prefix", ["../../escaped/pwn", "/tmp/abs/pwn", "cdm/../../up"])
def test_save_prefixes_stay_inside_the_output_folder(tiny_cascade, tmp_path, nothing_runs, prefix):
    wf = write(tmp_path, "01", [("SaveImage", "filename_prefix", prefix)])
    with pytest.raises(WorkflowError, match="filename_prefix must stay inside the output folder"):
        run(wf, tmp_path / "a" / "b" / "out", stage_dirs=[tiny_cascade])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wf.json"]  # nothing created
    assert not Path("/tmp/abs").exists()


def test_save_prefix_subfolders_are_allowed(tiny_cascade, tmp_path):
    wf = write(tmp_path, "01", [("SaveImage", "filename_prefix", "deep/er/name"),
                                ("CDMBaseSampler", "steps", 2), ("CDMSuperResStage", "steps", 2),
                                ("CDMBaseSampler", "batch_size", 1)])
    saved = run(wf, tmp_path / "out", stage_dirs=[tiny_cascade])
    assert (tmp_path / "out" / "deep" / "er" / "name_00001_.png") in saved


@pytest.mark.parametrize("name", ["../../../outside/evil.safetensors", "/etc/evil.safetensors"])
def test_stage_names_stay_inside_the_stage_folders(tiny_cascade, tmp_path, nothing_runs, name):
    outside = tmp_path / "outside"
    outside.mkdir()
    cc.save_stage(cc.load_stage(tiny_cascade / "cifar10-base16.safetensors"),
                  outside / "evil.safetensors")
    wf = write(tmp_path, "01", [("CDMStageLoader", "stage_name", name)])
    with pytest.raises(WorkflowError, match=r"stage_name = .*evil.safetensors' is not one of"):
        run(wf, tmp_path / "out", stage_dirs=[tiny_cascade])
    from nodes import comfy_bridge
    assert comfy_bridge.stage_path(name) is None
    climbing = "../" + tiny_cascade.name + "/cifar10-base16.safetensors"
    assert comfy_bridge.stage_path(climbing) is None


@pytest.mark.parametrize("image", ["../../../outside/secret.png", "/tmp/secret_cdm_test.png"])
def test_load_image_stays_inside_the_input_folders(tiny_cascade, tmp_path, nothing_runs, image):
    Image.new("RGB", (16, 16)).save("/tmp/secret_cdm_test.png")
    wf = write(tmp_path, "03", [("LoadImage", "image", image)])
    with pytest.raises(WorkflowError, match="image must be a file inside an input folder"):
        run(wf, tmp_path / "out", stage_dirs=[tiny_cascade])


def test_a_nan_pixel_in_an_sr_input_is_refused_by_name(tiny_cascade, tmp_path):
    pixels = np.full((16, 16, 3), 128, dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "in.png")
    wf = write(tmp_path, "03", [("LoadImage", "image", "in.png"),
                                ("CDMSuperResStage", "steps", 2), ("CDMRefiner", "steps", 2)])
    from nodes.headless import io_nodes
    real = io_nodes.LoadImage.load_image

    def with_nan(self, image):
        rgb, mask = real(self, image)
        rgb[0, 3, 4, 1] = float("nan")
        return rgb, mask

    io_nodes.LoadImage.load_image = with_nan
    try:
        with pytest.raises(WorkflowError, match=r"node 4 \(CDMCondAugment\): the image to augment "
                                                r"holds 1 NaN or infinite value"):
            run(wf, tmp_path / "out", stage_dirs=[tiny_cascade])
    finally:
        io_nodes.LoadImage.load_image = real
    assert not list((tmp_path / "out").rglob("*.png")) if (tmp_path / "out").exists() else True


def test_stage_files_with_non_finite_weights_are_refused(tiny_cascade, tmp_path):
    stage = cc.load_stage(tiny_cascade / "cifar10-base16.safetensors")
    with torch.no_grad():
        for p in stage.parameters():
            p.fill_(float("nan"))
    cc.save_stage(stage, tmp_path / "nan.safetensors")
    with pytest.raises(cc.CheckpointError, match="nan.safetensors: .* hold NaN or infinite"):
        cc.load_stage(tmp_path / "nan.safetensors")


def test_a_sampler_going_non_finite_names_the_stage_and_the_first_step(tiny_cascade, monkeypatch):
    stage = cc.load_stage(tiny_cascade / "cifar10-base16.safetensors")
    calls = []
    real = type(stage).forward

    def breaks_at_step_3(self, *args, **kwargs):
        calls.append(1)
        out = real(self, *args, **kwargs)
        return out * float("nan") if len(calls) >= 3 else out

    monkeypatch.setattr(type(stage), "forward", breaks_at_step_3)
    with pytest.raises(cc.CascadeError, match=r"\[.*\] sampling went non-finite .* at step 3 of 5"):
        cc.generate(stage, cc.SamplingPlan(steps=5, sampler="euler", spacing="karras"),
                    cc.Conditioning.for_base(2), seed=0)
    with pytest.raises(cc.CascadeError, match="guidance must be a finite number"):
        cc.SamplingPlan(steps=2, guidance=float("inf"))


def test_integral_floats_for_int_widgets_run_as_ints(tiny_cascade, tmp_path):
    wf = write(tmp_path, "01", [("CDMBaseSampler", "batch_size", 2.0),
                                ("CDMBaseSampler", "steps", 2.0), ("CDMSuperResStage", "steps", 2)])
    assert len([p for p in run(wf, tmp_path / "out", stage_dirs=[tiny_cascade])
                if p.parent.name != "previews"]) == 2
