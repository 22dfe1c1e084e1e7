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


def interleaved(fns: dict, repeats: int = 5, warmup: int = 1) -> dict:
    """Median seconds per call of each function, timed in alternation so that load on the
    machine affects every contender alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def peak_matmul_flops(n: int = 1024, repeats: int = 5) -> float:
    """This CPU's measured fp32 matmul throughput in FLOP/s (best of ``repeats``)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_time(lambda: a @ b) for _ in range(repeats))
    return 2 * n ** 3 / best


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
