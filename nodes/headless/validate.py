"""Check a whole prompt before any node runs, as ComfyUI's ``validate_prompt`` does.

Every problem is collected (types, ranges, choices, links and the nodes' own
``VALIDATE_INPUTS``) and reported at once, each naming the node id, its title
and the input, so that a bad workflow file never gets as far as loading a stage.
"""
from __future__ import annotations

import inspect
import math

from ..known_files import missing_file_hint
from .graph import declared_inputs, is_widget, problems_error


def _is_link(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)


def _number(value, typ: str):
    """The value as a number of widget type ``typ``, or None when it is not one."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if typ == "INT" and isinstance(value, float):
        return int(value) if value.is_integer() else None
    return value


def widget_problem(name: str, typ, opts: dict, value) -> str | None:
    """Why ``value`` does not fit widget ``name`` of type ``typ`` (None when it does)."""
    if isinstance(typ, (list, tuple)):
        return None if value in typ else f"{name} = {value!r} is not one of {list(typ)[:12]}" + (
            missing_file_hint(value) if name in ("stage_name", "classifier_name") else "")
    if typ in ("INT", "FLOAT"):
        wanted = "an integer" if typ == "INT" else "a number"
        number = _number(value, typ)
        if number is None:
            return f"{name} = {value!r}: expected {wanted}, found {type(value).__name__}"
        if not math.isfinite(number):
            return f"{name} = {value!r}: expected a finite number"
        lo, hi = opts.get("min"), opts.get("max")
        if (lo is not None and number < lo) or (hi is not None and number > hi):
            return f"{name} = {value!r}: expected {wanted} in [{lo}, {hi}]"
        return None
    if typ == "STRING" and not isinstance(value, str):
        return f"{name} = {value!r}: expected text, found {type(value).__name__}"
    if typ == "BOOLEAN" and not isinstance(value, bool):
        return f"{name} = {value!r}: expected true or false"
    return None


def _link_problem(prompt: dict, classes: dict, name: str, typ, value) -> str | None:
    source = prompt.get(value[0])
    if source is None:
        return f"input {name!r} comes from node {value[0]}, which does not run (missing, muted " \
               "or bypassed)"
    returns = classes[source["class_type"]].RETURN_TYPES
    if not 0 <= value[1] < len(returns):
        return f"input {name!r} comes from output {value[1]} of node {value[0]}, which has " \
               f"{len(returns)} outputs"
    if returns[value[1]] != typ and "*" not in (returns[value[1]], typ):
        return f"input {name!r} expects {typ}, but node {value[0]} output {value[1]} gives " \
               f"{returns[value[1]]}"
    return None


def _hook_problem(cls, inputs: dict) -> str | None:
    """A node's own ``VALIDATE_INPUTS`` (ComfyUI's convention: True, or the problem as text)."""
    hook = getattr(cls, "VALIDATE_INPUTS", None)
    if hook is None:
        return None
    wanted = inspect.signature(hook).parameters
    result = hook(**{k: v for k, v in inputs.items() if k in wanted and not _is_link(v)})
    return None if result is True else str(result)


def validate(prompt: dict, classes: dict):
    """Raise one WorkflowError listing every problem of ``prompt``; return when there is none.
    Integral floats given to INT widgets become ints, as ComfyUI converts them."""
    problems = []
    for nid, node in prompt.items():
        cls = classes[node["class_type"]]
        label = f"node {nid} ({node['_meta']['title']})"
        found = []
        for name, typ, opts, required in declared_inputs(cls):
            value = node["inputs"].get(name)
            if value is None:
                found.append(f"input {name!r} is missing" if required else None)
            elif _is_link(value):
                found.append(_link_problem(prompt, classes, name=name, typ=typ, value=value))
            elif is_widget(typ):
                found.append(widget_problem(name, typ, opts=opts, value=value))
                if typ == "INT" and isinstance(value, float) and value.is_integer():
                    node["inputs"][name] = int(value)  # as ComfyUI converts it
            else:
                found.append(f"input {name!r} needs a {typ} link, found the value {value!r}")
        if not any(found):
            found.append(_hook_problem(cls, node["inputs"]))
        problems += [f"{label}: {p}" for p in found if p]
    if problems:
        raise problems_error(problems)
