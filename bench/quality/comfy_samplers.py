"""ComfyUI's own samplers on the shipped cascade, in a real ComfyUI checkout.

    python -m bench.quality.comfy_samplers --comfyui PATH/ComfyUI

Needs a ComfyUI checkout and its Python dependencies (torchsde, scipy, ...) in this Python.
Runs the shipped base and SR stages through BaseSampler and SuperResStage with our dpmpp_2m and
with ComfyUI's euler_ancestral, dpmpp_2m_sde and uni_pc wired in as SAMPLER objects (the same
seeds, classes and 30 Karras steps per stage), times each, checks each is repeatable for a
seed, and writes bench/results/comfy_samplers.json and .png (one row per sampler).
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

from ..common import RESULTS, save

SAMPLERS = ("euler_ancestral", "dpmpp_2m_sde", "uni_pc")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--comfyui", required=True, help="path of a ComfyUI checkout")
    p.add_argument("--steps", type=int, default=30)
    args = p.parse_args(argv)
    from nodes import NODE_CLASS_MAPPINGS  # before ComfyUI is on the path: standalone mode
    from nodes.stage_nodes import load

    sys.path.append(args.comfyui)
    sys.argv = ["comfy", "--cpu"]
    import comfy.options

    comfy.options.enable_args_parsing()
    import comfy.samplers
    from comfyui_version import __version__ as comfy_version

    base, sr = load("cifar10-base16.safetensors"), load("cifar10-sr16to32.safetensors")
    base_node, sr_node = NODE_CLASS_MAPPINGS["CDMBaseSampler"](), NODE_CLASS_MAPPINGS[
        "CDMSuperResStage"]()
    common = dict(seed=2026, steps=args.steps, sampler_name="dpmpp_2m", spacing="karras",
                  guidance=1.0, dtype="fp32")

    def cascade(sampler=None):
        _, low = base_node.sample(stage=base, class_name="all classes", batch_size=10,
                                  truncate_s=0.15, sampler=sampler, **common)
        return sr_node.upscale(stage=sr, lowres=low, class_name="from input",
                               size_mismatch="error", sampler=sampler, **common)[0]

    rows, results = [], {}
    t0 = time.perf_counter()
    ours = cascade()
    results["dpmpp_2m (ours)"] = {"seconds": round(time.perf_counter() - t0, 2)}
    rows.append(ours)
    for name in SAMPLERS:
        s = comfy.samplers.sampler_object(name)
        t0 = time.perf_counter()
        a = cascade(s)
        seconds = time.perf_counter() - t0
        b = cascade(s)
        results[name] = {"seconds": round(seconds, 2), "repeatable": bool(torch.equal(a, b)),
                         "finite": bool(torch.isfinite(a).all()),
                         "mean_abs_diff_vs_ours": round(float((a - ours).abs().mean()), 4)}
        rows.append(a)
        print(name, results[name], flush=True)
    grid = torch.cat([torch.cat(list(r), dim=1) for r in rows], dim=0)  # rows of 10 images
    from PIL import Image

    Image.fromarray((grid.clamp(0, 1) * 255).round().byte().numpy()).save(
        RESULTS / "comfy_samplers.png")
    out = save("comfy_samplers", {"comfyui": comfy_version, "steps_per_stage": args.steps,
                                  "batch": 10, "results": results})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
