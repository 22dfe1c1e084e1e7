"""Which precisions a device computes natively, and what ``auto`` means on it.

bf16 autocast roughly doubles a CPU's convolution and matmul throughput where the
cores have bf16 dot-product instructions (AVX512-BF16, AMX) and crawls where they
emulate it; fp16 convolutions on a CPU are slower still. So ``auto`` picks bf16
only where it is native (fp16 on a CUDA GPU without bf16), fp32 elsewhere, and an
explicit bf16/fp16 on a device that lacks it is an error naming what the device
has, never a silent crawl. Detection is at run time: CUDA asks the driver, a CPU
reads its feature flags (``/proc/cpuinfo`` on Linux; elsewhere fp32 only).
"""
from __future__ import annotations

import functools
import os

import torch

from .errors import CascadeError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
NAMES = {v: k for k, v in DTYPES.items()}
CHOICES = ("auto", *DTYPES)
CPU_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
CPU_FP16_FLAGS = frozenset({"amx_fp16"})


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags (Linux ``/proc/cpuinfo``); empty where they cannot be read."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def native_dtypes(device) -> list[str]:
    """The precisions ``device`` computes natively, fp32 first."""
    device = torch.device(device)
    if device.type == "cuda":
        bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
        return ["fp32", "bf16", "fp16"] if bf16 else ["fp32", "fp16"]
    if device.type == "mps":
        return ["fp32", "fp16"]
    flags = cpu_flags()
    return ["fp32", *(["bf16"] if flags & CPU_BF16_FLAGS else []),
            *(["fp16"] if flags & CPU_FP16_FLAGS else [])]


def auto_dtype(device) -> str:
    """What ``auto`` resolves to on ``device``: bf16 where native, else fp16 on a GPU, else fp32.
    ``CASCADE_DTYPE=fp32`` (or another name) overrides it for a whole process."""
    forced = os.environ.get("CASCADE_DTYPE", "")
    if forced and forced != "auto":
        return resolve_name(forced, device)
    have = native_dtypes(device)
    if "bf16" in have:
        return "bf16"
    return "fp16" if "fp16" in have and torch.device(device).type != "cpu" else "fp32"


def resolve_name(dtype, device) -> str:
    """``dtype`` ("auto", a name, or a torch dtype) as the name of a precision ``device`` computes
    natively; a clear error when it cannot."""
    if isinstance(dtype, torch.dtype):
        if dtype not in NAMES:
            raise CascadeError("unsupported compute precision", f"one of {list(CHOICES)}", dtype)
        name = NAMES[dtype]
    else:
        name = str(dtype)
    if name == "auto":
        return auto_dtype(device)
    if name not in DTYPES:
        raise CascadeError("unknown precision", f"one of {list(CHOICES)}", repr(name))
    have = native_dtypes(device)
    if name not in have:
        raise CascadeError(f"{name} is not computed natively on {describe(device)} (it would run "
                           "emulated, many times slower)", f"one of {have + ['auto']}", name)
    return name


def resolve_dtype(dtype, device) -> torch.dtype:
    """Like ``resolve_name``, as a torch dtype."""
    return DTYPES[resolve_name(dtype, device)]


def describe(device) -> str:
    """The device in words, for messages and metadata: ``cuda (NVIDIA H100 ...)``, ``cpu``."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type
