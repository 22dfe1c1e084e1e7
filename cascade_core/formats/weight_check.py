"""The checks every loader runs on a set of weights before a network takes them."""
from __future__ import annotations

from ..base.errors import CheckpointError


def mismatch(tensors: dict, expected: dict) -> str | None:
    """What keeps ``tensors`` from loading into a module whose state dict is ``expected``:
    missing, unexpected and misshapen keys (the first three of each), or None."""
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(expected[k].shape)}" for k, v in tensors.items()
             if k in expected and v.shape != expected[k].shape]
    found = "; ".join(filter(None, [f"missing {missing[:3]}" if missing else "",
                                    f"unexpected {unexpected[:3]}" if unexpected else "",
                                    f"shape mismatch {wrong[:3]}" if wrong else ""]))
    return found or None


def check_finite_weights(tensors: dict, name: str):
    """Refuse weights holding NaN or infinite values, naming the file and the tensors."""
    broken = [k for k, v in tensors.items() if v.is_floating_point() and not v.isfinite().all()]
    if broken:
        raise CheckpointError(f"{name}: {len(broken)} weight tensor(s) hold NaN or infinite values",
                              "finite weights", ", ".join(broken[:3]))
