"""Type and range checks of config fields, before anything is built from them.

A stage file's metadata is input from a stranger: ``num_res_blocks 1000000``
would build a million blocks, ``base_channels 32.5`` or ``num_heads 0`` fail
deep inside torch. Every config dataclass checks its fields against declared
bounds first, so such a file is one sentence naming the field.
"""
from __future__ import annotations

import math

from .errors import CascadeError


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def check_int(name: str, value, bounds: tuple) -> int:
    """``value`` if it is an integer in ``bounds`` = [lo, hi] (an integral float is accepted as
    one)."""
    lo, hi = bounds
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not _is_int(value) or not lo <= value <= hi:
        raise CascadeError(f"config field {name} is out of range", f"an integer in [{lo}, {hi}]",
                           repr(value))
    return value


def check_number(name: str, value, bounds: tuple, *, open_low: bool = False) -> float:
    """``value`` if it is a finite number in ``bounds`` = [lo, hi] (or (lo, hi] with
    ``open_low``)."""
    lo, hi = bounds
    ok = _is_number(value) and (lo < value if open_low else lo <= value) and value <= hi
    if not ok:
        bracket = "(" if open_low else "["
        raise CascadeError(f"config field {name} is out of range",
                           f"a number in {bracket}{lo}, {hi}]", repr(value))
    return float(value)


def check_ints(name: str, values, bounds: tuple, most: int = 16) -> tuple:
    """A tuple of at most ``most`` integers in ``bounds`` = [lo, hi]."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise CascadeError(f"config field {name} must be a list", "a list of integers",
                           repr(values))
    values = tuple(values)
    if len(values) > most:
        raise CascadeError(f"config field {name} is too long", f"at most {most} entries",
                           len(values))
    return tuple(check_int(f"{name}[{i}]", v, bounds) for i, v in enumerate(values))


def check_fields(obj, limits: dict):
    """Check and normalise the fields of a (frozen) dataclass: ``limits`` maps a field's name to
    ``(int, lo, hi)``, ``(float, lo, hi)``, ``("float>", lo, hi)`` (lo excluded) or
    ``("ints", lo, hi)``."""
    for name, (kind, lo, hi) in limits.items():
        value = getattr(obj, name)
        if kind is int:
            value = check_int(name, value, (lo, hi))
        elif kind is float or kind == "float>":
            value = check_number(name, value, (lo, hi), open_low=kind == "float>")
        else:
            value = check_ints(name, value, (lo, hi))
        object.__setattr__(obj, name, value)
