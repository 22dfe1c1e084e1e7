"""Template thumbnails: ComfyUI's frontend shows ``<workflow>.jpg`` beside each node-pack template.

    python -m nodes.headless.thumbnails   # writes workflows/<name>.jpg for every workflow

A workflow with a screenshot (``<name>.png``, taken in the real frontend) gets it as a JPEG;
one without (05 and 06 need files that are not shipped, so no run could be shown) gets a
schematic of its graph: the nodes as boxes with their titles, and the links.
"""
from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageDraw

from .builder import WORKFLOWS
from .graph import NODE_DISPLAY_NAME_MAPPINGS

WIDTH, HEIGHT = 640, 360
TITLE_H = 30  # LiteGraph's title bar, drawn above a node's pos


def schematic(workflow: dict) -> Image.Image:
    """The graph as boxes and lines, fitted into WIDTH x HEIGHT."""
    nodes = workflow["nodes"]
    x0 = min(n["pos"][0] for n in nodes)
    y0 = min(n["pos"][1] for n in nodes) - TITLE_H
    x1 = max(n["pos"][0] + n["size"][0] for n in nodes)
    y1 = max(n["pos"][1] + n["size"][1] for n in nodes)
    scale = min((WIDTH - 20) / (x1 - x0), (HEIGHT - 20) / (y1 - y0))

    def at(x, y):
        return 10 + (x - x0) * scale, 10 + (y - y0) * scale

    img = Image.new("RGB", (WIDTH, HEIGHT), (32, 32, 36))
    draw = ImageDraw.Draw(img)
    boxes = {n["id"]: n for n in nodes}
    for _, src, _, dst, _, _ in workflow["links"]:
        a, b = boxes[src], boxes[dst]
        draw.line([at(a["pos"][0] + a["size"][0], a["pos"][1] + 10),
                   at(b["pos"][0], b["pos"][1] + 10)], fill=(140, 170, 220), width=2)
    for n in nodes:
        note = n["type"] in ("Note", "MarkdownNote")
        left, top = at(n["pos"][0], n["pos"][1] - TITLE_H)
        right, bottom = at(n["pos"][0] + n["size"][0], n["pos"][1] + n["size"][1])
        draw.rounded_rectangle([left, top, right, bottom], radius=4,
                               fill=(70, 55, 35) if note else (55, 55, 62),
                               outline=(120, 120, 130))
        title = n.get("title") or NODE_DISPLAY_NAME_MAPPINGS.get(n["type"], n["type"])
        draw.text((left + 4, top + 3), title[: max(4, int((right - left) / 6))],
                  fill=(230, 230, 230))
    return img


def thumbnail(path: Path) -> Image.Image:
    """The screenshot beside the workflow if there is one, else its schematic."""
    shot = path.with_suffix(".png")
    if shot.is_file():
        img = Image.open(shot).convert("RGB")
        img.thumbnail((WIDTH * 2, HEIGHT * 2))
        return img
    return schematic(json.loads(path.read_text()))


def main():
    for path in sorted(WORKFLOWS.glob("*.json")):
        out = path.with_suffix(".jpg")
        thumbnail(path).save(out, quality=85)
        print(f"wrote workflows/{out.name}")


if __name__ == "__main__":
    main()
