"""Progressive distillation (``train.distill``, ``cascade_core.run.distillation``): a round's
student takes two of its teacher's DDIM steps in one; the run is the stage recipe's."""
import json
import logging

import pytest
import torch

import cascade_core as cc
from cascade_core.run.distillation import (
    distillation_target,
    midpoints,
    student_sigmas,
    two_teacher_steps,
)
from tests.helpers import GaussianDenoiser, tiny_stage
from tests.test_train import make_folder
from train.distill import main
from train.eval import main as evaluate_main

ARGS = ["--batch-size", "16", "--no-progress", "--no-tensorboard", "--log-every",
        "20", "--lr", "1e-3"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Three colour classes at 8 px and a random-weight v-prediction teacher of that size."""
    d = tmp_path_factory.mktemp("distill")
    data = make_folder(d / "data", per_class=8, size=8)
    teacher = tiny_stage("base", 8, num_classes=3, parameterization="v",
                         class_names=("blue", "green", "red"))
    path = cc.save_stage(teacher, d / "teacher.safetensors")
    return {"dir": d, "data": data, "teacher": path}


def ddim(stage, steps, n=24):
    plan = cc.SamplingPlan(sampler="ddim", steps=steps, spacing="trailing")
    return cc.generate(stage, plan, cc.Conditioning.for_base(n, torch.arange(n) % 3), seed=7)[0]


def test_the_target_is_exact_for_an_oracle_and_the_grids_nest():
    """On Gaussian data the teacher is the exact denoiser: the target's single DDIM step lands
    where the two steps land; the midpoints of 4 trailing steps are the grid of 8 (T = 1000)."""
    stage = tiny_stage("base", 8, schedule=cc.ScheduleConfig("cosine", 1000))
    g4, g8 = student_sigmas(stage, 4), student_sigmas(stage, 8)
    assert torch.allclose(midpoints(stage, g4), g8[1::2], rtol=1e-4)
    oracle = GaussianDenoiser(0.2, 0.5)
    x = torch.randn(3, 3, 4, 4) * 2
    sigma, mid, nxt = (torch.full((3,), v) for v in (2.0, 1.0, 0.3))
    two = two_teacher_steps(lambda z, s: oracle(z, float(s[0])), x, (sigma, mid, nxt))
    x_tilde = distillation_target(x, two, sigma=sigma, sigma_next=nxt)
    one = x_tilde + (0.3 / 2.0) * (x - x_tilde)
    assert torch.allclose(one, two, atol=1e-5)


def test_a_round_brings_the_student_nearer_the_teachers_4_steps_than_its_own_2(setup):
    out = setup["dir"] / "run"
    assert main(["--teacher", str(setup["teacher"]), "--teacher-steps", "4", "--data",
                 str(setup["data"]), "--out", str(out), "--steps", "120", *ARGS]) == 0
    student = cc.load_stage(out / "round1-2steps" / "latest.safetensors")
    teacher = cc.load_stage(setup["teacher"])
    t4, t2, s2 = ddim(teacher, 4), ddim(teacher, 2), ddim(student, 2)
    own, learned = float((t2 - t4).pow(2).mean()), float((s2 - t4).pow(2).mean())
    assert learned < 0.75 * own, (learned, own)  # 0.012 against 0.026 when written
    cfg = student.config
    assert cfg.sampling == cc.SamplingConfig("ddim", 2, "trailing")
    lineage = cfg.training["distillation"]
    assert (lineage["teacher_steps"], lineage["round"]) == (4, 1)
    assert lineage["teacher"].endswith("teacher.safetensors")
    # finished: running again changes nothing and says so
    before = (out / "round1-2steps" / "latest.safetensors").read_bytes()
    assert main(["--teacher", str(setup["teacher"]), "--teacher-steps", "4", "--data",
                 str(setup["data"]), "--out", str(out), "--steps", "120", *ARGS]) == 0
    assert (out / "round1-2steps" / "latest.safetensors").read_bytes() == before


def test_a_distilled_stage_stays_a_stage_in_the_nodes(setup, caplog):
    """Steps 0 samples as the stage says; other steps are sampled as asked, with a warning; the
    Stage Info says how it samples; a base student in an SR node is refused by role."""
    from nodes.sampling_nodes import CDMBaseSampler, CDMSuperResStage
    from nodes.stage_nodes import LoadedStage, describe

    teacher = cc.load_stage(setup["teacher"])
    student = cc.Stage(cc.StageConfig(**{**teacher.config.__dict__, "sampling":
                                         cc.SamplingConfig("ddim", 2, "trailing")}))
    student.load_state_dict(teacher.state_dict())
    loaded = LoadedStage(student, "student.safetensors")
    kw = dict(seed=0, sampler_name="dpmpp_2m", spacing="karras", class_name="red", guidance=1.0,
              batch_size=2, truncate_s=0.0, dtype="fp32")
    with caplog.at_level(logging.WARNING, logger="cascade_core"):
        said, _ = CDMBaseSampler().sample(loaded, steps=0, **kw)
    assert "distilled" not in caplog.text
    plan = cc.SamplingPlan(sampler="ddim", steps=2, spacing="trailing")
    want, _ = cc.generate(student, plan, cc.Conditioning.for_base(2, torch.tensor([2, 2])),
                          seed=0)
    assert torch.allclose(said, (want.permute(0, 2, 3, 1) + 1) / 2, atol=1e-6)
    with caplog.at_level(logging.WARNING, logger="cascade_core"):
        CDMBaseSampler().sample(loaded, steps=5, **kw)
    assert "distilled for ddim with 2 steps" in caplog.text
    assert "sampling: distilled for ddim with 2 steps" in describe(loaded)
    with pytest.raises(cc.CascadeError, match="this needs a sr stage"):
        CDMSuperResStage().upscale(loaded, cc.make_condition(torch.zeros(1, 3, 4, 4), 0.1, 0),
                                   seed=0, steps=0, sampler_name="ddim", spacing="trailing",
                                   class_name="from input", guidance=1.0, size_mismatch="error",
                                   dtype="fp32")


def test_an_evaluation_samples_a_distilled_stage_as_it_says(setup):
    """``train.eval``'s settings: steps 0 takes a distilled stage's own sampling and 20 steps
    of the asked sampler on another stage; given steps are sampled as asked; the SR stage
    takes its own sampler and spacing where given."""
    from train.metrics.sample_cascade import CascadeSettings

    teacher = cc.load_stage(setup["teacher"])
    student = cc.Stage(cc.StageConfig(**{**teacher.config.__dict__, "sampling":
                                         cc.SamplingConfig("ddim", 2, "trailing")}))
    settings = CascadeSettings(sampler="dpmpp_2m", spacing="karras")
    plan = settings.plan(student, 0)
    assert (plan.sampler, plan.steps, plan.spacing) == ("ddim", 2, "trailing")
    plan = settings.plan(teacher, 0)
    assert (plan.sampler, plan.steps, plan.spacing) == ("dpmpp_2m", 20, "karras")
    plan = settings.plan(student, 6)
    assert (plan.sampler, plan.steps, plan.spacing) == ("dpmpp_2m", 6, "karras")
    assert student.config.sampling.departs(6, "dpmpp_2m", "karras")
    assert not student.config.sampling.departs(2, "ddim", "trailing")
    assert not teacher.config.sampling.departs(6, "dpmpp_2m", "karras")
    path = cc.save_stage(student, setup["dir"] / "student-eval.safetensors")
    record = setup["dir"] / "eval.jsonl"
    assert evaluate_main(["--base", str(path), "--num", "3", "--batch", "3", "--ref",
                          str(setup["data"]), "--metrics", "swd", "--steps", "0", "--json",
                          str(record)]) == 0
    assert json.loads(record.read_text())["base_sampling"] == ["ddim", 2, "trailing"]
    sr = tiny_stage("sr", 16, low_res=8)
    plan = CascadeSettings(sr_sampler="ddim", sr_spacing="trailing").plan(sr, 4)
    assert (plan.sampler, plan.steps, plan.spacing) == ("ddim", 4, "trailing")
    plan = CascadeSettings(sr_sampler="ddim", sr_spacing="trailing").plan(teacher, 4)
    assert (plan.sampler, plan.spacing) == ("dpmpp_2m", "karras")


def test_bad_teachers_and_rounds_are_refused_naming_them(setup, tmp_path, capsys):
    dae = cc.Stage(cc.StageConfig(role="base", resolution=8, network="dae",
                                  shallow=cc.ShallowConfig(hidden=8, blocks=1, heads=2)))
    dae_path = cc.save_stage(dae, tmp_path / "dae.safetensors")
    distilled = cc.Stage(cc.StageConfig(**{**cc.load_stage(setup["teacher"]).config.__dict__,
                                           "sampling": cc.SamplingConfig("ddim", 4,
                                                                         "trailing")}))
    made = cc.save_stage(distilled, tmp_path / "made4.safetensors")
    cases = [
        (["--teacher", str(dae_path), "--teacher-steps", "4"], "not a diffusion stage"),
        (["--teacher", str(setup["teacher"]), "--teacher-steps", "4", "--student-steps", "4"],
         "the student needs fewer"),
        (["--teacher", str(setup["teacher"]), "--teacher-steps", "8", "--student-steps", "3"],
         "must be a power of two"),
        (["--teacher", str(setup["teacher"])], "--teacher-steps N"),
        (["--teacher", str(made), "--teacher-steps", "8"], "distilled stage made for 4 steps"),
        (["--teacher", str(tmp_path / "none.safetensors")], "teacher stage file not found"),
    ]
    for argv, message in cases:
        assert main([*argv, "--data", str(setup["data"]), "--out", str(tmp_path / "o"),
                     *ARGS]) == 2, argv
        assert message in capsys.readouterr().err, argv
    assert not (tmp_path / "o").exists()  # nothing written for a refused run


def test_a_round_resumes_and_refuses_another_teacher(setup, tmp_path, capsys):
    out = tmp_path / "run"
    common = ["--teacher-steps", "4", "--data", str(setup["data"]), "--out", str(out),
              "--steps", "8", "--checkpoint-every", "4", *ARGS]
    assert main(["--teacher", str(setup["teacher"]), *common, "--stop-after", "4"]) == 0
    other = cc.save_stage(tiny_stage("base", 8, num_classes=3, parameterization="v", seed=3,
                                     class_names=("blue", "green", "red")),
                          tmp_path / "other.safetensors")
    assert main(["--teacher", str(other), *common, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "started with another teacher" in err and "teacher.safetensors" in err
    assert "other.safetensors" in err
    assert main(["--teacher", str(setup["teacher"]), *common, "--resume"]) == 0
    done = cc.load_stage(out / "round1-2steps" / "latest.safetensors")
    assert done.config.training["steps"] == 8


def test_an_eps_teacher_without_a_null_class_gets_a_v_student_and_every_class(setup, tmp_path,
                                                                               capsys):
    """ADM's kind of stage: eps-prediction, no null class. Its student predicts v; label dropout
    is off by default and refused when asked for."""
    adm_like = cc.save_stage(tiny_stage("base", 8, num_classes=3, parameterization="eps",
                                        null_class=False, class_names=("blue", "green", "red")),
                             tmp_path / "adm.safetensors")
    common = ["--teacher", str(adm_like), "--teacher-steps", "4", "--data", str(setup["data"]),
              "--steps", "2", *ARGS]
    assert main([*common, "--out", str(tmp_path / "o")]) == 0
    student = cc.load_stage(tmp_path / "o" / "round1-2steps" / "latest.safetensors")
    assert student.config.parameterization == "v" and not student.config.null_class
    assert main([*common, "--out", str(tmp_path / "p"), "--label-dropout", "0.1"]) == 2
    assert "has no null class" in capsys.readouterr().err


def test_shipping_a_student_keeps_its_sampling_and_lineage_in_fp16(setup, tmp_path, capsys):
    """``bench.release.ship_weights --suffix``: the student is written under the suffixed name
    in fp16 with its recorded sampling and lineage; the example image is left alone."""
    from bench.release import ship_weights

    teacher = cc.load_stage(setup["teacher"])
    lineage = {"distillation": {"teacher": "teacher.safetensors", "teacher_steps": 4}}
    config = cc.StageConfig(**{**teacher.config.__dict__, "training": lineage,
                               "sampling": cc.SamplingConfig("ddim", 2, "trailing")})
    student = cc.Stage(config)
    student.load_state_dict(teacher.state_dict())
    run = tmp_path / "round1-2steps"
    run.mkdir()
    cc.save_stage(student, run / "latest.safetensors")
    (run / "config.json").write_text('{"batch_size": 16}')
    example = ship_weights.ROOT / "workflows" / "cdm_example_16px.png"
    before = example.stat().st_mtime_ns
    assert ship_weights.main(["--base", str(run), "--out", str(tmp_path), "--suffix=-2step"]) == 0
    path = tmp_path / f"{ship_weights.NAMES['base']}-2step.safetensors"
    assert cc.read_config(path)[1]["cdm_dtype"] == "fp16"
    shipped = cc.load_stage(path)
    assert shipped.config.sampling == cc.SamplingConfig("ddim", 2, "trailing")
    assert shipped.config.training["distillation"] == lineage["distillation"]
    assert example.stat().st_mtime_ns == before
    assert "fp16 vs fp32 samples" in capsys.readouterr().out
