"""The README's picture of the three cascade topologies, drawn from real samples.

    python -m bench.topology_picture      # writes bench/results/topologies.png and
                                          # bench/results/wide_canvas_regions.png

Linear (base -> SR, workflow 01), recursive (the same SR stage twice, workflow 02) and parallel
(three regions merged on one canvas, then the SR stage following them: workflow 10; the
regions' boxes outlined), each drawn with the shipped cascade's own outputs at seed 0, enlarged with
nearest-neighbour so the pixels show. The second picture is workflow 10 itself, run by the
headless runner, its four images stacked.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch
from PIL import Image, ImageDraw

import cascade_core as cc

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "topologies.png"
SCALE, GAP, PAD, LABEL_W = 3, 26, 14, 90
BOXES = ((0, 0, 16, 20), (0, 14, 16, 20), (0, 28, 16, 20))  # workflow 10's regions
COLOURS = ("#e4572e", "#29335c", "#f3a712")


def picture(x: torch.Tensor) -> Image.Image:
    """One image (C, H, W) in [-1, 1], enlarged."""
    arr = ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    img = Image.fromarray(arr)
    return img.resize((img.width * SCALE, img.height * SCALE), Image.NEAREST)


def samples() -> dict:
    """The pictures of each row, left to right."""
    base = cc.load_stage(ROOT / "weights" / "cifar10-base16.safetensors")
    sr = cc.load_stage(ROOT / "weights" / "cifar10-sr16to32.safetensors")
    plan = cc.SamplingPlan(steps=8)
    labels = torch.tensor([1])
    low, _ = cc.generate(base, plan, cc.Conditioning.for_base(1, labels), seed=0)
    up = cc.super_resolve(sr, plan, cc.Conditioning.for_upsampling(
        cc.make_condition(low, 0.1, 0), labels), seed=0)
    up2 = cc.super_resolve(sr, plan, cc.Conditioning.for_upsampling(
        cc.make_condition(up, 0.1, 0)), seed=0)
    regions = [cc.Region(base, torch.tensor([c]), box=box) for c, box in zip((0, 8, 1), BOXES)]
    wide = cc.generate_regions(regions, plan, canvas=(16, 48), batch=1, seed=0)
    wide_up = cc.super_resolve(sr, plan, cc.Conditioning.for_upsampling(
        cc.make_condition(wide, 0.1, 0), regions=cc.follow_regions(regions, sr, factor=2)),
        seed=0)
    return {"linear": [low[0], up[0]], "recursive": [low[0], up[0], up2[0]],
            "parallel": [wide[0], wide_up[0]]}


def draw(rows: dict) -> Image.Image:
    pictures = {name: [picture(x) for x in xs] for name, xs in rows.items()}
    width = LABEL_W + max(sum(p.width + GAP for p in ps) for ps in pictures.values())
    heights = [max(p.height for p in ps) for ps in pictures.values()]
    canvas = Image.new("RGB", (width, sum(heights) + PAD * (len(rows) + 1)), "white")
    pen = ImageDraw.Draw(canvas)
    top = PAD
    for (name, ps), height in zip(pictures.items(), heights):
        pen.text((8, top + height // 2 - 5), name, fill="black")
        x = LABEL_W
        for k, img in enumerate(ps):
            canvas.paste(img, (x, top))
            if name == "parallel" and k == 0:  # the regions' boxes on the canvas
                for (t, left, h, w), colour in zip(BOXES, COLOURS):
                    pen.rectangle([x + left * SCALE, top + t * SCALE,
                                   x + (left + w) * SCALE - 1, top + (t + h) * SCALE - 1],
                                  outline=colour, width=2)
            x += img.width
            if k + 1 < len(ps):
                pen.text((x + 6, top + 20), "->", fill="black")
                x += GAP
        top += height + PAD
    return canvas


def workflow_10() -> Image.Image:
    """Workflow 10's four images as the headless runner saves them, x4, stacked."""
    from nodes.run_workflow import main as run_workflow

    with tempfile.TemporaryDirectory() as tmp:
        if run_workflow([str(ROOT / "workflows" / "10_wide_canvas_regions.json"), "--out", tmp]):
            raise SystemExit("workflow 10 failed")
        images = [Image.open(p).convert("RGB") for p in
                  sorted((Path(tmp) / "cdm").glob("wide_*.png"))]
        images = [im.resize((im.width * 4, im.height * 4), Image.NEAREST) for im in images]
    gap = 8
    out = Image.new("RGB", (images[0].width, sum(im.height + gap for im in images) - gap),
                    "white")
    for k, im in enumerate(images):
        out.paste(im, (0, k * (im.height + gap)))
    return out


def main() -> int:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    draw(samples()).save(OUT)
    wide = OUT.with_name("wide_canvas_regions.png")
    workflow_10().save(wide)
    for path in (OUT, wide):
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
