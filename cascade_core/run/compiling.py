"""``torch.compile`` for a stage's network, with its cost said out loud and a way back to eager.

Compiling fuses GroupNorm + SiLU, the scale-shift and the attention glue into a few
kernels: the shipped SR stage at batch 16 evaluates about 1.3x faster in fp32 once
compiled, after 36-48 s of compiling on this project's 2-core CPU (bf16 gained
nothing at two threads; bench/RESULTS.md 10.4). That cost lands on the first
evaluation of every new input shape, so each one is timed and reported ("compiled
... in N s") rather than left as a silent stall. Where
compiling fails (no C++ compiler on the machine, an unsupported operator) the
stage falls back to eager with one warning line and keeps working.
"""
from __future__ import annotations

import time

import torch


class CompiledNetwork:
    """Calls a compiled ``net``; times the first call per input-shape signature (compiling
    happens there) and reports it through ``log``; after a failure, calls ``net`` eagerly."""

    def __init__(self, net: torch.nn.Module, *, label: str, log=print, mode: str | None = None,
                 backend: str = "inductor"):
        self.eager, self.label, self.log = net, label, log
        self.fn = torch.compile(net, mode=mode, backend=backend)
        self.compile_seconds: dict[tuple, float] = {}  # shape signature -> seconds of 1st call
        self.failure: str | None = None

    def __call__(self, *args):
        """The network's output for ``args``, compiled (or eager after a failure)."""
        if self.failure is not None:
            return self.eager(*args)
        signature = tuple(tuple(a.shape) if isinstance(a, torch.Tensor) else None for a in args)
        if signature in self.compile_seconds:
            return self.fn(*args)
        t0 = time.perf_counter()
        try:
            out = self.fn(*args)
        except Exception as e:  # noqa: BLE001  (any compiler failure: fall back, say so once)
            first = (str(e).strip().splitlines() or [""])[0][:160]
            self.failure = f"{type(e).__name__}: {first}"
            self.log(f"warning: torch.compile failed for {self.label}, running eager "
                     f"({self.failure})")
            return self.eager(*args)
        seconds = time.perf_counter() - t0
        self.compile_seconds[signature] = seconds
        shape = "x".join(map(str, signature[0])) if signature and signature[0] else "?"
        self.log(f"torch.compile: {self.label} compiled for input {shape} in {seconds:.1f} s "
                 "(once per input shape; later calls run the compiled code)")
        return out

    @property
    def total_compile_seconds(self) -> float:
        """Seconds spent compiling so far, over every input shape."""
        return sum(self.compile_seconds.values())


def compile_stage(stage, *, log=print, mode: str | None = None,
                  backend: str = "inductor") -> CompiledNetwork:
    """Make ``stage`` evaluate its network through ``torch.compile`` from now on (weights and
    state_dict keys unchanged); returns the wrapper, whose ``compile_seconds`` say what compiling
    cost. ``uncompile_stage`` undoes it. ``mode``/``backend`` are torch.compile's."""
    runner = CompiledNetwork(stage.net, label=stage.name, log=log, mode=mode, backend=backend)
    stage.runner = runner
    return runner


def uncompile_stage(stage) -> None:
    """Back to the eager network."""
    stage.runner = None
