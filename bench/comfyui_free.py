"""In a real ComfyUI server: load a stage through the pack, press /free, and measure the server.

    python -m bench.release.released stand-ins COMFY/models/cascade 64_256_upsampler.pt
    python -m bench.comfyui_free --comfy COMFY --python COMFY_VENV/bin/python

Starts ``main.py --cpu`` on 127.0.0.1 (the pack must be in ``COMFY/custom_nodes/``), reads what
the Stage and Classifier Loaders list, queues Stage Loader -> Stage Info for ``--stage`` and one
step of the Super-Resolution Stage with it (which hands the stage to ComfyUI's model management,
as every sampling node does; the log lines that name it are printed), then posts ``/free`` with
``unload_models`` and ``free_memory``, and prints the server's resident memory at each point.
Passes when /free gives back at least 80 % of the stage file's size.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .comfy_server import Server, rss_mb


def listed(server: Server, node: str, widget: str) -> list:
    return server.get(f"/object_info/{node}")[node]["input"]["required"][widget][0]


# the stage sampled once (an SR stage, one step, from the shipped 32 px example resized to fit),
# so that it goes through ComfyUI's model management as every sampling node's stage does
ONE_SR_STEP = {
    "3": {"class_type": "LoadImage", "inputs": {"image": "cdm_example_32px.png"}},
    "4": {"class_type": "CDMCondAugment", "inputs": {"image": ["3", 0], "s": 0.0,
                                                     "blur_sigma": 0.0, "seed": 0}},
    "5": {"class_type": "CDMSuperResStage", "inputs": {
        "stage": ["1", 0], "lowres": ["4", 0], "seed": 0, "steps": 1, "sampler_name": "ddim",
        "spacing": "ddim", "class_name": "0", "guidance": 1.0,
        "size_mismatch": "resize to fit", "dtype": "fp32"}},
    "6": {"class_type": "PreviewImage", "inputs": {"images": ["5", 0]}},
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.comfyui_free", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--comfy", required=True, type=Path, help="a ComfyUI checkout")
    p.add_argument("--python", default=sys.executable, help="ComfyUI's Python")
    p.add_argument("--stage", default="64_256_upsampler.pt")
    p.add_argument("--port", type=int, default=8199)
    p.add_argument("--no-sampling", action="store_true",
                   help="only load the stage (Stage Info), without the one SR step")
    args = p.parse_args(argv)
    size = (args.comfy / "models" / "cascade" / args.stage).stat().st_size / 2 ** 20
    server = Server(args.comfy, args.python, port=args.port)
    try:
        server.wait_ready()
        print("Stage Loader lists:", listed(server, "CDMStageLoader", "stage_name"))
        print("Classifier Loader lists:", listed(server, "CDMClassifierLoader",
                                                 "classifier_name"))
        idle = rss_mb(server.proc.pid)
        status = server.run({
            "1": {"class_type": "CDMStageLoader", "inputs": {"stage_name": args.stage}},
            "2": {"class_type": "CDMStageInfo", "inputs": {"stage": ["1", 0]}},
            **({} if args.no_sampling else ONE_SR_STEP)})
        time.sleep(2)
        loaded = rss_mb(server.proc.pid)
        server.post("/free", {"unload_models": True, "free_memory": True})
        time.sleep(5)
        freed = rss_mb(server.proc.pid)
    finally:
        server.stop()
    managed = [line.strip() for line in server.log.read_text().splitlines()
               if "ComfyStage" in line]
    print("ComfyUI's model management on the stage:", managed or "nothing logged")
    given_back = loaded - freed
    ok = status == "success" and given_back >= 0.8 * size
    print(f"{args.stage} ({size:.0f} MiB): prompt {status}; server RSS idle {idle:.0f} MB, with "
          f"the stage {loaded:.0f} MB, after /free {freed:.0f} MB: {given_back:.0f} MB given back "
          f"= {given_back / size:.0%} of the file ({'passed' if ok else 'FAILED'}: >= 80 %)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
