"""CUDA paths: mixed precision, channels_last, torch.compile, DDP through NCCL.

These run wherever a CUDA GPU is present (a lent GPU runs the whole suite
there) and are skipped on CPU-only machines such as CI's: there is nothing to run them on.
"""
import os
import socket

import pytest
import torch

import cascade_core as cc
from cascade_core import precision

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture
def stage():
    from helpers import tiny_stage
    return tiny_stage(resolution=16, num_classes=3).cuda()


def _generate(stage, dtype):
    img, _ = cc.generate(stage, 4, seed=3, steps=4, sampler="dpmpp_2m", dtype=dtype,
                         labels=torch.tensor([0, 1, 2, 0]))
    return img


@pytest.mark.parametrize("name", ["bf16", "fp16"])
def test_mixed_precision_sampling_matches_fp32(stage, name):
    if name not in precision.native_dtypes("cuda"):
        pytest.skip(f"{torch.cuda.get_device_name()} has no native {name}")
    ref = _generate(stage, torch.float32)
    out = _generate(stage, name)
    # sampled on the GPU, handed back on the CPU in fp32 like every IMAGE of the pipeline
    assert stage.device.type == "cuda" and out.device.type == "cpu" and out.dtype == torch.float32
    # an untrained stage saturates at +-1, which magnifies rounding: on an H100 bf16 ended up to
    # 0.106 from fp32 at worst (fp16: under 0.1); autocast gone wrong would be ~0.5 on average
    diff = (out - ref).abs()
    assert torch.isfinite(out).all() and float(diff.mean()) < 0.03 and float(diff.max()) < 0.3
    assert not torch.equal(out, ref)  # autocast really ran in the lower precision


def test_auto_resolves_to_a_gpu_precision(monkeypatch):
    monkeypatch.delenv("CASCADE_DTYPE", raising=False)
    assert precision.resolve_name("auto", "cuda") in ("bf16", "fp16")


def test_channels_last_stage_gives_the_same_images(stage, monkeypatch):
    # fp32 convolutions on CUDA may use TF32 (PyTorch's default for cuDNN), and the two layouts
    # pick different kernels: measured 8e-3 apart on an H100. Layout alone must not matter.
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    ref = _generate(stage, torch.float32)
    stage.to(memory_format=torch.channels_last)
    out = _generate(stage, torch.float32)
    assert float((out - ref).abs().max()) < 1e-4


def test_compiled_stage_matches_eager_on_the_gpu(stage):
    x, t = torch.randn(2, 3, 16, 16, device="cuda"), torch.full((2,), 300.0, device="cuda")
    labels = torch.tensor([0, 1], device="cuda")
    with torch.inference_mode():
        eager = stage(x, t, labels=labels)
    said = []
    runner = cc.compile_stage(stage, log=said.append)
    with torch.inference_mode():
        out = stage(x, t, labels=labels)
    assert runner.failure is None, runner.failure
    assert float((out - eager).abs().max()) < 1e-3 and "compiled for input" in said[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_training_step_through_nccl_at_world_size_one(stage, monkeypatch):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    for key, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()),
                       "RANK": "0", "WORLD_SIZE": "1"}.items():
        monkeypatch.setenv(key, value)
    dist.init_process_group("nccl", rank=0, world_size=1)
    try:
        stage.train()
        net = DistributedDataParallel(stage, device_ids=[torch.cuda.current_device()])
        opt = torch.optim.AdamW(stage.parameters(), lr=1e-3)
        x0 = torch.rand(4, 3, 16, 16, device="cuda") * 2 - 1
        before = [p.detach().clone() for p in stage.parameters()]
        with torch.autocast("cuda", dtype=precision.resolve_dtype("auto", "cuda")):
            loss = cc.training_loss(stage, x0, torch.randint(0, 100, (4,), device="cuda"),
                                    noise=torch.randn_like(x0),
                                    labels=torch.tensor([0, 1, 2, 0], device="cuda"),
                                    model=net)["loss"].mean()
        loss.backward()
        opt.step()
        assert torch.isfinite(loss)
        assert any(not torch.equal(b, p) for b, p in zip(before, stage.parameters()))
        t = torch.ones(1, device="cuda")
        dist.all_reduce(t)
        assert float(t) == 1.0
    finally:
        dist.destroy_process_group()
        os.environ.pop("MASTER_PORT", None)
