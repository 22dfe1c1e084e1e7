"""Helpers shared by the benchmarks: timing side by side, FLOP counts, result files."""
from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    return {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version()}


def forward_flops(fn) -> int:
    """FLOPs of one call of ``fn`` (PyTorch's flop counter: 2 per multiply-add)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def alternating(fns: dict, repeats: int = 5, warmup: int = 1) -> dict:
    """Seconds per call of each function, timed in alternation so that load on the machine
    affects every contender alike: ``{name: {"median", "min", "max", "runs"}}``."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: {"median": statistics.median(v), "min": min(v), "max": max(v), "runs": len(v)}
            for k, v in times.items()}


def peak_matmul_flops(n: int = 1024, repeats: int = 5, dtype=torch.float32) -> float:
    """This CPU's measured matmul throughput in FLOP/s (best of ``repeats``)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = min(_time(lambda: a @ b) for _ in range(repeats))
    return 2 * n ** 3 / best


def peak_conv_flops(channels: int = 256, size: int = 32, repeats: int = 5,
                    dtype=torch.float32, *, stored: bool = False) -> float:
    """This CPU's measured 3x3-convolution throughput in FLOP/s (batch 8, best of ``repeats``),
    in ``dtype`` through autocast as the models run, or (``stored``) with weights and input
    stored in ``dtype``, as a model loaded in that precision runs."""
    conv = torch.nn.Conv2d(channels, channels, 3, padding=1)
    x = torch.randn(8, channels, size, size)
    if stored:
        conv, x = conv.to(dtype), x.to(dtype)
    flops = 2 * 8 * size * size * channels * channels * 9

    def run():
        with torch.inference_mode(), torch.autocast("cpu", dtype=dtype,
                                                    enabled=dtype != torch.float32 and not stored):
            conv(x)
    run()
    return flops / min(_time(run) for _ in range(repeats))


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def save(name: str, payload: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=1))
    return path


def tiny_dataset(root: Path, classes: int = 3, per_class: int = 8, size: int = 16) -> Path:
    """A class-folder dataset of simple coloured patterns, for the benchmarks' --quick modes."""
    import numpy as np
    from PIL import Image

    for c in range(classes):
        folder = Path(root) / f"class{c}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            rng = np.random.default_rng(c * 1000 + i)
            img = rng.integers(0, 80, (size, size, 3), dtype=np.uint8)
            img[..., c % 3] += np.uint8(150)
            img[i % size:i % size + 4, :] = 255
            Image.fromarray(img).save(folder / f"{i}.png")
    return Path(root)


def pyplot():
    """matplotlib's pyplot on the Agg backend, or None (with a message) when it is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)")
        return None
    return plt
