"""UI-format workflows (ComfyUI format version 0.4) turned into runnable prompts.

``to_prompt`` does what ComfyUI's frontend does before queueing: it resolves
links, maps ``widgets_values`` onto the node's declared widget inputs in order
(skipping the extra control-after-generate value that follows a seed), and
drops virtual nodes such as notes. The result is the API ("prompt") format
that ComfyUI's ``/prompt`` endpoint accepts.
"""
from __future__ import annotations

from .. import NODE_DISPLAY_NAME_MAPPINGS
from .._core import core
from ..widgets import RENAMED

VIRTUAL = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize"}
MUTED, BYPASSED = 2, 4


class WorkflowError(core.CascadeError):
    """A workflow that cannot run, naming the node."""


def declared_inputs(cls) -> list[tuple[str, object, dict, bool]]:
    """(name, type, options, required) of a node class's inputs, in declaration order."""
    spec = cls.INPUT_TYPES()
    out = []
    for section, required in (("required", True), ("optional", False)):
        for name, decl in spec.get(section, {}).items():
            typ = decl[0]
            opts = decl[1] if len(decl) > 1 and isinstance(decl[1], dict) else {}
            out.append((name, typ, opts, required))
    return out


def is_widget(typ) -> bool:
    """True for inputs that are widgets (values stored in the node) rather than links."""
    return isinstance(typ, (list, tuple)) or typ in WIDGET_TYPES


def has_control(name: str, opts: dict) -> bool:
    """True for widgets followed by ComfyUI's control-after-generate value (seeds)."""
    return bool(opts.get("control_after_generate")) or name in ("seed", "noise_seed")


def node_label(node: dict) -> str:
    """``node ID (title)`` for error messages."""
    return f"node {node.get('id')} ({node.get('title') or node.get('type')})"


def problems_error(problems: list[str]) -> WorkflowError:
    """One error that lists every problem found, one per line."""
    head = "the workflow cannot run" + (f" ({len(problems)} problems)" if len(problems) > 1 else "")
    return WorkflowError(head + ":\n  " + "\n  ".join(problems))


def _links(workflow: dict, problems: list[str]) -> dict:
    links = {}
    raw = workflow.get("links", [])
    if not isinstance(raw, list):
        problems.append(f"'links' must be a list, found {type(raw).__name__}")
        return links
    for k, link in enumerate(raw):
        try:
            link_id, src, src_slot = (link[0], link[1], link[2]) if isinstance(link, list) else \
                (link["id"], link["origin_id"], link["origin_slot"])
            if not is_id(link_id) or not is_id(src) or isinstance(src_slot, bool):
                raise TypeError
            links[link_id] = (str(src), int(src_slot))
        except (KeyError, IndexError, TypeError, ValueError):
            problems.append(f"link #{k} is malformed: expected [id, origin, slot, target, "
                            f"target_slot, type], found {link!r}"[:200])
    return links


def is_id(value) -> bool:
    """Node and link ids are integers or strings (never lists, floats or booleans)."""
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def check_shape(workflow):
    """Refuse anything but a JSON object whose 'nodes' is a list of node objects, each with an
    id, its widget values as a list or an object, and its inputs as a list of link slots."""
    if not isinstance(workflow, dict) or "nodes" not in workflow:
        raise WorkflowError("not a UI-format workflow", "a JSON object with 'nodes' and 'links'",
                            type(workflow).__name__)
    if not isinstance(workflow["nodes"], list) or not all(
            isinstance(n, dict) and "id" in n for n in workflow["nodes"]):
        raise WorkflowError("not a UI-format workflow: 'nodes' must be a list of node objects",
                            "a list of objects with 'id' and 'type'",
                            type(workflow["nodes"]).__name__)
    problems = []
    for node in workflow["nodes"]:
        label = f"node {node['id']!r}"
        if not is_id(node["id"]):
            problems.append(f"{label}: an id must be a number or a string")
        if not isinstance(node.get("widgets_values", []), (list, dict)):
            problems.append(f"{label}: widgets_values must be a list (or an object), found "
                            f"{type(node['widgets_values']).__name__}")
        inputs = node.get("inputs") or []
        if not isinstance(inputs, list) or not all(isinstance(i, dict) for i in inputs):
            problems.append(f"{label}: inputs must be a list of objects")
        elif any(i.get("link") is not None and not is_id(i["link"]) for i in inputs):
            problems.append(f"{label}: an input's link must be a link id (a number), found "
                            + repr(next(i["link"] for i in inputs if i.get("link") is not None
                                        and not is_id(i["link"])))[:80])
    if problems:
        raise problems_error(problems)


def to_prompt(workflow: dict, classes: dict) -> dict:
    """The API-format prompt of a UI-format workflow: what ComfyUI's frontend queues. Every
    structural problem (unknown node types, dangling links, missing widget values) is reported
    at once."""
    check_shape(workflow)
    problems: list[str] = []
    links = _links(workflow, problems)
    prompt = {}
    for node in workflow["nodes"]:
        if node.get("type") in VIRTUAL or node.get("mode", 0) in (MUTED, BYPASSED):
            continue
        cls = classes.get(node.get("type"))
        if cls is None:
            problems.append(f"{node_label(node)} cannot run here: unknown node type "
                            f"{node.get('type')!r}")
            continue
        problems.extend(control_problems(node, cls))
        inputs = _inputs(node, cls, links=links, problems=problems)
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs,
                                   "_meta": {"title": node.get("title") or node["type"]}}
    if problems:
        raise problems_error(problems)
    return prompt


def widget_positions(node: dict, cls) -> dict[str, int]:
    """Index in ``widgets_values`` of each widget of ``node``, skipping control-after-generate
    values (and, so that the widgets after it keep their places, a malformed one: a list or an
    object, which ``control_problems`` reports)."""
    values = node.get("widgets_values", [])
    positions, i = {}, 0
    for name, typ, opts, _ in declared_inputs(cls):
        if not is_widget(typ) or i >= len(values):
            continue
        positions[name] = i
        i += 1
        if has_control(name, opts) and i < len(values) and (
                values[i] in CONTROL_VALUES if isinstance(values[i], str)
                else isinstance(values[i], (list, dict))):
            i += 1
    return positions


def control_problems(node: dict, cls) -> list[str]:
    """A control-after-generate value that is a list or an object, named."""
    values = node.get("widgets_values", [])
    if not isinstance(values, list):
        return []
    out, positions = [], widget_positions(node, cls)
    for name, _, opts, _ in declared_inputs(cls):
        i = positions.get(name)
        if i is not None and has_control(name, opts) and i + 1 < len(values) \
                and isinstance(values[i + 1], (list, dict)):
            out.append(f"{node_label(node)}: the control after {name!r} must be one of "
                       f"{sorted(CONTROL_VALUES)}, found {values[i + 1]!r}"[:200])
    return out


def _linked(node: dict, links: dict, problems: list[str]) -> dict:
    linked = {}
    for inp in node.get("inputs") or []:
        if not isinstance(inp, dict) or inp.get("link") is None:
            continue
        if inp["link"] not in links:
            problems.append(f"{node_label(node)}: input {inp.get('name')!r} uses link "
                            f"{inp['link']}, which the workflow's 'links' do not have")
        else:
            linked[inp.get("name")] = links[inp["link"]]
    return linked


def _inputs(node: dict, cls, links: dict, problems: list[str]) -> dict:
    linked = _linked(node, links, problems)
    values = node.get("widgets_values", [])
    positions = widget_positions(node, cls) if isinstance(values, list) else {}
    inputs = {}
    for name, typ, opts, required in declared_inputs(cls):
        if name in linked:
            inputs[name] = list(linked[name])
        elif is_widget(typ):
            if isinstance(values, dict) and (name in values or _old_name(name) in values):
                inputs[name] = values[name] if name in values else values[_old_name(name)]
            elif name in positions:
                inputs[name] = values[positions[name]]
            elif "default" in opts or not required:
                inputs[name] = opts.get("default")
            else:
                problems.append(f"{node_label(node)} has no value for widget {name!r}: expected "
                                f"one widgets_values entry per widget, found {len(values)}")
        elif required:
            problems.append(f"{node_label(node)}: input {name!r} is not connected (expected a "
                            f"{typ} link)")
    return inputs


def _old_name(name: str) -> str | None:
    return next((old for old, new in RENAMED.items() if new == name), None)


def node_names(node: dict) -> tuple:
    """What ``--set NODE.widget`` may call a node: its id, type (with or without the CDM
    prefix), title or display name."""
    typ = str(node.get("type"))
    return (str(node.get("id")), typ, typ.removeprefix("CDM"), node.get("title"),
            NODE_DISPLAY_NAME_MAPPINGS.get(typ))


def set_widget(workflow: dict, classes: dict, target: str, value: str) -> int:
    """Set widget ``name`` (``target`` is ``name`` or ``NODE.name``, NODE one of ``node_names``)
    to ``value`` parsed by the widget's type; returns how many nodes changed.
    Widget names from before a rename (``widgets.RENAMED``) still work."""
    node_key, _, name = target.rpartition(".")
    name = RENAMED.get(name, name)
    changed = 0
    for node in workflow["nodes"]:
        cls = classes.get(node.get("type"))
        names = node_names(node)
        if cls is None or (node_key and node_key not in names):
            continue
        spec = {n: (t, o) for n, t, o, _ in declared_inputs(cls)}
        positions = widget_positions(node, cls)
        if name not in positions:
            continue
        typ, _ = spec[name]
        node["widgets_values"][positions[name]] = _parse(value, typ, node, name=name)
        changed += 1
    if not changed:
        raise WorkflowError(f"--set {target}: no node has that widget",
                            "NODE.widget or widget of a node here", target)
    return changed


def _parse(value: str, typ, node, name):
    try:
        if typ == "INT":
            return int(value)
        if typ == "FLOAT":
            return float(value)
        if typ == "BOOLEAN":
            return value.lower() in ("1", "true", "yes", "on")
    except ValueError:
        raise WorkflowError(f"{node_label(node)}: bad value for {name}", typ, repr(value)) from None
    if isinstance(typ, (list, tuple)) and value not in typ:
        raise WorkflowError(f"{node_label(node)}: bad value for {name}", f"one of {list(typ)}",
                            repr(value))
    return value


def execution_order(prompt: dict) -> list[str]:
    """Node ids so that every node runs after the nodes it takes inputs from. Iterative (a
    depth-first walk with its own stack), so a chain of any length runs."""
    order, state = [], {}
    for root in prompt:
        stack = [(root, iter(_sources(prompt, root)))]
        if state.get(root) == "done":
            continue
        state[root] = "visiting"
        while stack:
            nid, sources = stack[-1]
            src = next(sources, None)
            if src is None:
                stack.pop()
                state[nid] = "done"
                order.append(nid)
            elif state.get(src) == "visiting":
                path = [n for n, _ in stack] + [src]
                path = path[path.index(src):]
                shown = path if len(path) <= 8 else path[:4] + ["..."] + path[-3:]
                raise WorkflowError("the workflow has a cycle", "an acyclic graph",
                                    " -> ".join(shown))
            elif state.get(src) != "done":
                state[src] = "visiting"
                stack.append((src, iter(_sources(prompt, src))))
    return order


def _sources(prompt: dict, nid: str) -> list[str]:
    out = []
    for value in prompt[nid]["inputs"].values():
        if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
            if value[0] not in prompt:
                raise WorkflowError(f"node {nid} takes an input from node {value[0]}, which "
                                    "does not run", "an active source node", value[0])
            out.append(value[0])
    return out
