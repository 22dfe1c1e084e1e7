"""The Sweep node's axes as people type them: ``0, 0.1, 0.2`` or ``euler, dpmpp_2m``.

Parsing typed widget text is the node's business; the engine's
``cascade_core.analysis.sweep`` runs cells (dicts of settings) and says which
settings a cell may hold (``SWEEPABLE``).
"""
from __future__ import annotations

from dataclasses import dataclass

from . import widgets
from ._core import core

sweep = core.sweep


@dataclass(frozen=True)
class Axis:
    """An axis of the grid: a setting and its values in order."""

    name: str
    values: tuple

    def label(self, value) -> str:
        """``s=0.1``, ``steps=20``, ``dpmpp_2m``."""
        return str(value) if self.name in ("sampler", "spacing") else f"{self.name}={value:g}"


def parse_axis(name: str, text: str) -> Axis:
    """An axis from a typed list such as ``0, 0.1, 0.2`` or ``euler, dpmpp_2m``."""
    if name not in sweep.SWEEPABLE:
        raise core.CascadeError("unknown sweep axis", f"one of {sorted(sweep.SWEEPABLE)}",
                                repr(name))
    items = [t.strip() for t in str(text).replace(";", ",").split(",") if t.strip()]
    if not items:
        raise core.CascadeError(f"the {name} axis has no values", "a comma-separated list, e.g. "
                                "0, 0.1, 0.2", repr(text))
    parse = sweep.SWEEPABLE[name]
    try:
        values = tuple(parse(float(t)) if parse is int else parse(t) for t in items)
    except (ValueError, OverflowError):
        raise core.CascadeError(f"the {name} axis has a value that is not a finite number",
                                "numbers separated by commas", repr(text)) from None
    _check_values(name, values)
    return Axis(name, values)


def _ranges() -> dict[str, tuple[float, float]]:
    """Each numeric axis's range: the bounds of the widget that setting has on the nodes."""
    def bounds(decl):
        return decl[1]["min"], decl[1]["max"]
    return {"s": (0.0, 1.0), "strength": (0.0, 1.0), "steps": (1, bounds(widgets.steps())[1]),
            "guidance": bounds(widgets.guidance()), "seed": bounds(widgets.seed())}


def _check_values(name: str, values: tuple):
    allowed = {"sampler": core.SAMPLERS, "spacing": core.SPACINGS}.get(name)
    if allowed is not None:
        bad = [v for v in values if v not in allowed]
        expected = f"one of {sorted(allowed)}"
    else:
        lo, hi = _ranges()[name]
        bad = [v for v in values if not lo <= v <= hi]  # NaN fails both comparisons
        expected = f"values in [{lo:g}, {hi:g}], as on the node's widget"
    if bad:
        raise core.CascadeError(f"the {name} axis has values out of range", expected, bad[:5])


def cells_of(x: Axis, y: Axis | None) -> list[dict]:
    """The settings that differ per cell, row by row (y), then column by column (x)."""
    rows = y.values if y is not None else (None,)
    cells = [{x.name: xv, **({y.name: yv} if y is not None else {})}
             for yv in rows for xv in x.values]
    if len(cells) > sweep.MAX_CELLS:
        raise core.CascadeError("too many sweep cells", f"at most {sweep.MAX_CELLS}", len(cells))
    if y is not None and y.name == x.name:
        raise core.CascadeError("the two sweep axes are the same setting", "two different axes",
                                x.name)
    return cells
