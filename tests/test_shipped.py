"""The cascade shipped in weights/: its metadata, its size, and the shipped workflows on it."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cascade_core as cc
from nodes.headless.executor import run

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "weights"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SHIPPED = {"cifar10-base16": ("base", 0, 16), "cifar10-sr16to32": ("sr", 16, 32),
           "cifar10-refiner32": ("refiner", 32, 32)}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_stage_metadata(name):
    path = WEIGHTS / f"{name}.safetensors"
    cfg, meta = cc.read_config(path)
    role, low, res = SHIPPED[name]
    assert (cfg.role, cfg.low_res, cfg.resolution) == (role, low, res)
    assert meta["cdm_dtype"] == "fp16" and path.stat().st_size < 5e6
    assert cfg.training["steps"] > 0 and "cifar10" in cfg.training["data"]
    stage = cc.load_stage(path)
    assert stage.num_parameters() <= 2_000_000
    if role != "refiner":
        assert cfg.class_names == CLASSES
    if role != "base":
        assert cfg.augmentation.s_max > 0  # trained with conditioning augmentation


@pytest.mark.parametrize("workflow,prefix,size", [("01_base_then_sr.json", "base_sr", 32),
                                                  ("03_upscale_your_image.json", "upscaled", 32)])
def test_shipped_workflows_run_on_shipped_weights(tmp_path, workflow, prefix, size):
    saved = run(ROOT / "workflows" / workflow, tmp_path,
                ["steps=3", "batch_size=2"] if workflow.startswith("01")
                else ["steps=3"])
    mine = [p for p in saved if p.name.startswith(prefix)]
    assert mine and all(Image.open(p).size == (size, size) for p in mine)
    pixels = torch.from_numpy(np.array(Image.open(mine[0]))).float()
    assert float(pixels.std()) > 5  # an image, not a flat field


STUDENTS = sorted(WEIGHTS.glob("cifar10-*-*step.safetensors"))


def test_workflow_12_samples_shipped_students():
    from nodes.headless.builder import BASE_FEW, SR_FEW
    assert {BASE_FEW, SR_FEW} <= {p.name for p in STUDENTS}


@pytest.mark.parametrize("path", STUDENTS, ids=lambda p: p.name)
def test_shipped_student_records_its_sampling_and_a_shipped_teacher(path):
    """A distilled stage in weights/ samples as it says (DDIM, n steps, trailing) and its lineage
    names a teacher in weights/ of its role, with the content digest of the shipped file."""
    from train.distill import digest

    steps = int(path.stem.rsplit("-", 1)[1].removesuffix("step"))
    cfg, _ = cc.read_config(path)
    assert cfg.sampling == cc.SamplingConfig("ddim", steps, "trailing")
    made = cfg.training["distillation"]
    teacher = ROOT / made["teacher"]
    assert teacher.parent == WEIGHTS and teacher.is_file()
    assert made["teacher_digest"] == digest(teacher) and made["teacher_steps"] == 2 * steps
    was = cc.read_config(teacher)[0]
    assert (was.role, was.low_res, was.resolution) == (cfg.role, cfg.low_res, cfg.resolution)
    assert path.stat().st_size < 8e6


def test_workflow_12_runs_on_the_shipped_students_as_they_say(tmp_path, caplog):
    import logging
    with caplog.at_level(logging.WARNING, logger="cascade_core"):
        saved = run(ROOT / "workflows" / "12_few_step_cascade.json", tmp_path, ["batch_size=2"])
    assert "distilled for" not in caplog.text  # steps 0: as each stage says
    mine = [p for p in saved if p.name.startswith("few_step")]
    assert len(mine) == 2 and all(Image.open(p).size == (32, 32) for p in mine)
    assert float(torch.from_numpy(np.array(Image.open(mine[0]))).float().std()) > 5
