"""How a compact workflow spec becomes a UI-format workflow, as ComfyUI's frontend saves one.

A spec lists nodes (id, type, position, widget values by name, title) and
links (source id, output slot, target id, input name); ``build`` fills in
widget order, control-after-generate values, typed inputs and outputs, and
link ids (format version 0.4), and the top-level ``models`` list the
frontend's missing-models dialog reads.
"""
from __future__ import annotations

import uuid

from .. import NODE_CLASS_MAPPINGS
from .graph import declared_inputs, has_control, is_widget
from .io_nodes import BUILTIN

CLASSES = {**BUILTIN, **NODE_CLASS_MAPPINGS}


def control_after_generate(node_type: str) -> str:
    """What ComfyUI does to a seed after each Run, per node of a shipped workflow: a base
    sampler's seed is randomized (Run again gives new images, as ComfyUI's own default does,
    while the first Run uses the seed stored in the workflow, so it reproduces the pictures in
    the README); every later stage and the Sweep keep theirs (a stage's noise stays fixed, so
    what changes between Runs is the base images, and a sweep compares like with like)."""
    return "randomize" if node_type == "CDMBaseSampler" else "fixed"


def _widgets(node_type: str, values: dict) -> list:
    if node_type in ("Note", "MarkdownNote"):
        return [values["text"]]
    if node_type == "LoadImage":
        return [values["image"], "image"]
    out = []
    for name, typ, opts, _ in declared_inputs(CLASSES[node_type]):
        if not is_widget(typ):
            continue
        default = opts.get("default", typ[0] if isinstance(typ, (list, tuple)) and typ else None)
        out.append(values.get(name, default))
        if has_control(name, opts):
            out.append(control_after_generate(node_type))
    return out


def build(name: str, nodes: list[dict], links: list[tuple], models: list | None = None) -> dict:
    """The UI workflow of a spec; ``models``: {name, url, directory} of files it needs."""
    ui_links, inputs, outputs = [], {}, {}
    for link_id, (src, slot, dst, input_name) in enumerate(links, start=1):
        src_type = next(n["type"] for n in nodes if n["id"] == src)
        typ = CLASSES[src_type].RETURN_TYPES[slot]
        ui_links.append([link_id, src, slot, dst, _slot_of(nodes, dst, input_name), typ])
        inputs[(dst, input_name)] = link_id
        outputs.setdefault((src, slot), []).append(link_id)
    ui_nodes = []
    for order, n in enumerate(nodes):
        t = n["type"]
        node = {"id": n["id"], "type": t, "pos": list(n["pos"]),
                "size": list(n.get("size", [300, 200])),
                "flags": {}, "order": order, "mode": 0, "inputs": [], "outputs": [],
                "properties": {"Node name for S&R": t},
                "widgets_values": _widgets(t, n.get("values", {}))}
        if n.get("title"):
            node["title"] = n["title"]
        if t in CLASSES:
            for in_name, typ, _, _ in declared_inputs(CLASSES[t]):
                if not is_widget(typ):
                    node["inputs"].append({"name": in_name, "type": typ,
                                           "link": inputs.get((n["id"], in_name))})
            cls = CLASSES[t]
            names = getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)
            for slot, (out_name, typ) in enumerate(zip(names, cls.RETURN_TYPES)):
                node["outputs"].append({"name": out_name, "type": typ,
                                        "links": outputs.get((n["id"], slot), []),
                                        "slot_index": slot})
        else:
            node["color"], node["bgcolor"] = "#432", "#653"
        ui_nodes.append(node)
    workflow = {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"cdm-pack/{name}")), "revision": 0,
                "last_node_id": max(n["id"] for n in nodes), "last_link_id": len(links),
                "nodes": ui_nodes, "links": ui_links, "groups": [], "config": {},
                "extra": {"ds": _fit_view(ui_nodes)}, "version": 0.4}
    if models:
        workflow["models"] = models
    return workflow


def _fit_view(nodes, width=1870, height=990, margin=30):
    """The initial zoom and offset that show the whole graph in the canvas of a 1920x1080 window
    (less the frontend's 48 px side bar and 90 px of menu and tab bars)."""
    x0 = min(n["pos"][0] for n in nodes)
    y0 = min(n["pos"][1] for n in nodes) - 40  # title bars sit above pos
    x1 = max(n["pos"][0] + n["size"][0] for n in nodes)
    y1 = max(n["pos"][1] + n["size"][1] for n in nodes)
    scale = round(min(1.0, (width - 2 * margin) / (x1 - x0), (height - 2 * margin) / (y1 - y0)), 3)
    return {"scale": scale,
            "offset": [round(margin / scale - x0, 1), round(margin / scale - y0, 1)]}


def _slot_of(nodes, dst, input_name) -> int:
    t = next(n["type"] for n in nodes if n["id"] == dst)
    names = [nm for nm, typ, _, _ in declared_inputs(CLASSES[t]) if not is_widget(typ)]
    return names.index(input_name)


def note(node_id, pos, text, size=(330, 240)):
    return {"id": node_id, "type": "Note", "pos": pos, "size": list(size), "values": {"text": text}}


def loader(node_id, pos, file, title):
    return {"id": node_id, "type": "CDMStageLoader", "pos": pos, "size": [320, 60], "title": title,
            "values": {"stage_name": file}}


def region(node_id, y, *, name, box):
    """A CDM Region node at x 360: ``name``'s class on ``box`` (left, top, width, height) in
    pixels."""
    left, top, width, height = box
    return {"id": node_id, "type": "CDMRegion", "pos": [360, y], "size": [320, 330],
            "title": f"Region: {name}", "values": {"class_name": name, "left": left, "top": top,
                                                   "width": width, "height": height,
                                                   "units": "pixels"}}


