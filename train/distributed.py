"""Devices, precision and torch.distributed set-up (torchrun: NCCL on GPUs, gloo on CPUs)."""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from cascade_core import CascadeError


@dataclass
class Runtime:
    rank: int
    world: int
    device: torch.device
    amp_dtype: torch.dtype | None  # autocast dtype, None for fp32
    scaler: bool                    # fp16 needs a gradient scaler

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CascadeError("CUDA was requested but is not available", "--device cpu or auto", name)
    return dev


def pick_precision(name: str, device: torch.device) -> tuple[torch.dtype | None, bool]:
    if name == "auto":
        if device.type != "cuda":
            return None, False
        return (torch.bfloat16, False) if torch.cuda.is_bf16_supported() else (torch.float16, True)
    if name == "fp32":
        return None, False
    if name == "bf16":
        return torch.bfloat16, False
    if device.type != "cuda":
        raise CascadeError("fp16 training needs a GPU", "bf16 or fp32 on the CPU", "fp16")
    return torch.float16, True


def setup(device_name: str, precision: str) -> Runtime:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = pick_device(device_name)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    amp, scaler = pick_precision(precision, device)
    return Runtime(rank, world, device, amp_dtype=amp, scaler=scaler)


def autocast_for(rt: Runtime):
    """Mixed precision as the run's precision setting asks (nothing for fp32)."""
    if rt.amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(rt.device.type, dtype=rt.amp_dtype)


def any_rank(flag: bool, rt: Runtime) -> bool:
    """True if ``flag`` is set on any process (a stop signal reaches every rank together)."""
    if rt.world == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=rt.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def barrier(rt: Runtime):
    if rt.world > 1:
        dist.barrier()


def teardown():
    if dist.is_initialized():
        dist.destroy_process_group()
