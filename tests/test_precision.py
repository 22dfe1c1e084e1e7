"""Precision (what a device computes natively, what ``auto`` means, where it is recorded) and
torch.compile (its reported cost, its fall-back)."""
import json

import pytest
import torch
from PIL import Image

import cascade_core as cc
from cascade_core import precision
from nodes.headless.executor import run

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
BF16_CPU = frozenset({"avx512f", "avx512_bf16"})
PLAIN_CPU = frozenset({"avx2", "fma"})


@pytest.fixture
def cpu_with(monkeypatch):
    """Pretend this CPU has the given feature flags (and no CASCADE_DTYPE override)."""
    monkeypatch.delenv("CASCADE_DTYPE", raising=False)

    def use(flags):
        monkeypatch.setattr(precision, "cpu_flags", lambda: flags)
    return use


def test_native_dtypes_follow_the_cpu_flags(cpu_with):
    cpu_with(PLAIN_CPU)
    assert precision.native_dtypes("cpu") == ["fp32"]
    assert precision.resolve_name("auto", "cpu") == "fp32"
    cpu_with(BF16_CPU)
    assert precision.native_dtypes("cpu") == ["fp32", "bf16"]
    assert precision.resolve_dtype("auto", "cpu") == torch.bfloat16
    cpu_with(frozenset({"amx_bf16", "amx_fp16"}))
    assert precision.native_dtypes("cpu") == ["fp32", "bf16", "fp16"]
    assert precision.resolve_name("auto", "cpu") == "bf16"  # bf16 first: fp16 overflows more


def test_cpu_flags_are_read_from_this_machine():
    flags = precision.cpu_flags()
    assert isinstance(flags, frozenset)
    if (ROOT / "/proc/cpuinfo").exists():
        assert flags, "a Linux CPU lists its flags in /proc/cpuinfo"


def test_emulated_precision_is_an_error_naming_the_device(cpu_with):
    cpu_with(PLAIN_CPU)
    with pytest.raises(cc.CascadeError, match=r"bf16 is not computed natively on cpu.*"
                                              r"expected one of \['fp32', 'auto'\], found bf16"):
        precision.resolve_dtype(torch.bfloat16, "cpu")
    cpu_with(BF16_CPU)
    with pytest.raises(cc.CascadeError, match="fp16 is not computed natively on cpu"):
        precision.resolve_dtype("fp16", "cpu")
    with pytest.raises(cc.CascadeError, match="unknown precision.*'half'"):
        precision.resolve_dtype("half", "cpu")
    with pytest.raises(cc.CascadeError, match="unsupported compute precision"):
        precision.resolve_dtype(torch.float64, "cpu")


def test_environment_override_forces_a_precision(cpu_with, monkeypatch):
    cpu_with(BF16_CPU)
    monkeypatch.setenv("CASCADE_DTYPE", "fp32")
    assert precision.resolve_name("auto", "cpu") == "fp32"
    monkeypatch.setenv("CASCADE_DTYPE", "fp16")  # an override is checked like any request
    with pytest.raises(cc.CascadeError, match="fp16 is not computed natively"):
        precision.resolve_name("auto", "cpu")


def test_auto_samples_exactly_as_the_precision_it_resolves_to(cpu_with):
    from helpers import tiny_stage
    stage = tiny_stage(resolution=8)
    def sample(precision):
        plan = cc.SamplingPlan(steps=3, sampler="euler", precision=precision)
        return cc.generate(stage, plan, cc.Conditioning.for_base(2), seed=5)[0]

    cpu_with(PLAIN_CPU)
    auto_plain = sample("auto")
    fp32 = sample(torch.float32)
    assert torch.equal(auto_plain, fp32)
    cpu_with(BF16_CPU)
    auto_bf16 = sample("auto")
    bf16 = sample("bf16")
    assert torch.equal(auto_bf16, bf16) and not torch.equal(auto_bf16, fp32)
    assert float((auto_bf16 - fp32).abs().max()) < 0.1  # the same picture, rounded differently
    cpu_with(PLAIN_CPU)
    with pytest.raises(cc.CascadeError, match="bf16 is not computed natively"):
        sample("bf16")


def test_node_records_the_resolved_precision(cpu_with, tiny_cascade):
    from nodes import NODE_CLASS_MAPPINGS
    from nodes.stage_nodes import load
    from nodes.widgets import PRECISION_KEY
    assert NODE_CLASS_MAPPINGS["CDMBaseSampler"].INPUT_TYPES()["required"]["dtype"][1][
        "default"] == "auto"
    cpu_with(BF16_CPU)
    extra = {"workflow": {}}
    NODE_CLASS_MAPPINGS["CDMBaseSampler"]().sample(
        stage=load("cifar10-base16.safetensors"), seed=0, steps=2, sampler_name="euler",
        spacing="karras", class_name="cat", guidance=1.0, batch_size=1, truncate_s=0.0,
        dtype="auto", unique_id="3", extra_pnginfo=extra)
    assert extra[PRECISION_KEY] == {"3": {"dtype": "bf16", "requested": "auto", "device": "cpu"}}


@pytest.mark.parametrize("flags,expected", [(PLAIN_CPU, "fp32"), (BF16_CPU, "bf16")])
def test_saved_png_names_the_precision_of_every_sampling_node(cpu_with, tiny_cascade, tmp_path,
                                                              flags, expected):
    cpu_with(flags)
    saved = run(ROOT / "workflows" / "01_base_then_sr.json", tmp_path, ["steps=2", "dtype=auto"],
                [tiny_cascade])
    info = Image.open(saved[-1]).info
    recorded = json.loads(info["cascade_precision"])
    assert {n: r["dtype"] for n, r in recorded.items()} == {"3": expected, "4": expected}
    assert json.loads(info["workflow"])["nodes"] and json.loads(info["prompt"])["3"]


def test_compiled_stage_matches_eager_and_reports_its_compile_time():
    from helpers import tiny_stage
    stage = tiny_stage(resolution=8)
    x, t = torch.randn(2, 3, 8, 8), torch.full((2,), 400.0)
    with torch.inference_mode():
        eager = stage(x, t)
    said = []
    runner = cc.compile_stage(stage, log=said.append, backend="eager")  # dynamo without codegen
    assert stage.state_dict().keys() == tiny_stage(resolution=8).state_dict().keys()
    with torch.inference_mode():
        first, again = stage(x, t), stage(x, t)
    assert torch.allclose(first, eager, atol=1e-6) and torch.equal(first, again)
    assert len(said) == 1 and "compiled for input 2x3x8x8 in" in said[0]
    assert list(runner.compile_seconds) == [((2, 3, 8, 8), (2,), None, None, None)]
    assert runner.failure is None
    with torch.inference_mode():
        stage(x[:1], t[:1])  # a new shape compiles again, and says so
    assert len(said) == 2 and "1x3x8x8" in said[1]
    cc.uncompile_stage(stage)
    assert stage.runner is None


def test_compile_failure_falls_back_to_eager_with_one_warning(monkeypatch):
    from helpers import tiny_stage

    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler found\nlong trace")
    monkeypatch.setattr(torch, "compile", lambda net, **kw: broken)
    stage = tiny_stage(resolution=8)
    x, t = torch.randn(2, 3, 8, 8), torch.full((2,), 400.0)
    with torch.inference_mode():
        eager = stage(x, t)
    said = []
    runner = cc.compile_stage(stage, log=said.append)
    with torch.inference_mode():
        outs = [stage(x, t) for _ in range(3)]
    assert all(torch.equal(o, eager) for o in outs)
    assert said == [f"warning: torch.compile failed for {stage.name}, running eager "
                    "(RuntimeError: no C++ compiler found)"]
    assert runner.failure and not runner.compile_seconds


def test_stage_loader_compile_option(tiny_cascade, monkeypatch):
    from nodes import NODE_CLASS_MAPPINGS
    loader = NODE_CLASS_MAPPINGS["CDMStageLoader"]()
    opts = loader.INPUT_TYPES()["optional"]["compile"]
    assert opts[0] == "BOOLEAN" and opts[1]["default"] is False
    monkeypatch.setattr(torch, "compile", lambda net, **kw: net)  # compile = identity: fast
    (plain,) = loader.load("cifar10-base16.safetensors")
    (fast,) = loader.load("cifar10-base16.safetensors", compile=True)
    assert plain.stage.runner is None and fast.stage.runner is not None
    assert fast.stage is not plain.stage  # a compiled copy does not change the eager one
