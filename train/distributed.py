"""Devices, precision and torch.distributed set-up (torchrun: NCCL on GPUs, gloo on CPUs)."""
from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from cascade_core import CascadeError, precision

_monitor, _probe = None, 10.0
PROBE_SECONDS = 10.0  # how long the diagnosis waits for the other ranks after a timeout


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
    """(autocast dtype or None for fp32, whether a gradient scaler is needed): ``auto`` and
    the names are resolved by ``cascade_core.precision`` (native precisions only)."""
    if name == "fp16" and device.type == "cpu":
        raise CascadeError("fp16 training needs a GPU", "bf16 or fp32 on the CPU", "fp16")
    resolved = precision.resolve_name(name, device)
    if resolved == "fp32":
        return None, False
    return precision.DTYPES[resolved], resolved == "fp16"


def setup(device_name: str, precision: str, timeout: float = 600.0) -> Runtime:
    """The run's rank, world size, device and precision; joins the process group under torchrun
    with ``timeout`` seconds for every collective."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = pick_device(device_name)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                timeout=timedelta(seconds=timeout))
        global _monitor, _probe  # a gloo group that can tell which rank stopped answering
        _monitor = dist.new_group(backend="gloo", timeout=timedelta(seconds=timeout))
        _probe = min(PROBE_SECONDS, timeout)
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


def lost_rank_error(rt: Runtime, error: Exception, step: int) -> CascadeError:
    """After a collective failed (timed out, or a peer's connection closed): ask every rank to
    check in, and name those that do not, in one sentence instead of gloo's or NCCL's trace."""
    missing = "the coordinating rank 0" if rt.rank else "another rank"
    if _monitor is not None:
        try:
            dist.monitored_barrier(group=_monitor, timeout=timedelta(seconds=_probe),
                                   wait_all_ranks=True)
        except RuntimeError as e:
            found = re.search(r"Ranks? ([\d, ]+) failed to pass monitoredBarrier", str(e))
            if found:
                missing = "rank " + found.group(1).strip()
    first = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
    return CascadeError(f"rank {rt.rank} of {rt.world}: the other processes stopped answering at "
                        f"step {step}; {missing} did not respond (frozen, swapped out or killed; "
                        f"--collective-timeout sets the wait)", "every rank answering", first)
