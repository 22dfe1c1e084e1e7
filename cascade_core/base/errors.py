"""The one exception family a person using the pack can meet.

Every error names the stage (or file) involved, what was expected and what was
found, so a ComfyUI user sees a sentence instead of a torch stack trace.
"""
import math

import torch


class CascadeError(ValueError):
    """A user-facing error: bad value, wrong stage, mismatched sizes."""

    def __init__(self, what: str, expected=None, found=None, stage: str | None = None):
        msg = f"[{stage}] {what}" if stage else what
        details = [f"expected {expected}" if expected is not None else "",
                   f"found {found}" if found is not None else ""]
        details = ", ".join(d for d in details if d)
        super().__init__(f"{msg}: {details}" if details else msg)
        self.stage, self.expected, self.found = stage, expected, found


class CheckpointError(CascadeError):
    """A stage file that is missing, corrupt, or does not describe a stage."""


class SamplingInterrupted(RuntimeError):
    """Raised by a sampling callback to stop a run between two steps."""


def check_range(name: str, value: float, lo: float, hi: float, stage: str | None = None) -> float:
    """Return ``value`` as float if ``lo <= value <= hi``, else raise a CascadeError."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise CascadeError(f"{name} must be a number", f"a value in [{lo}, {hi}]", repr(value),
                           stage=stage) from None
    if not (lo <= v <= hi):
        raise CascadeError(f"{name} is out of range", f"a value in [{lo}, {hi}]", v, stage=stage)
    return v


def check_finite(name: str, x, stage: str | None = None):
    """Raise a CascadeError when the tensor (or number) ``x`` holds NaN or infinite values."""
    if isinstance(x, torch.Tensor):
        bad = int((~torch.isfinite(x)).sum())
        if bad:
            raise CascadeError(f"{name} holds {bad} NaN or infinite value(s)", "finite values",
                               f"{bad} of {x.numel()}", stage=stage)
    elif not math.isfinite(float(x)):
        raise CascadeError(f"{name} must be a finite number", "a finite number", x, stage=stage)
