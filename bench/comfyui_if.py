"""Workflows 08 and 09 in a real ComfyUI server, with ComfyUI's own Load CLIP reading T5-XXL.

    python -m bench.release.if_workflows --dir DIR          # the random-weight stand-ins
    python -m bench.comfyui_if --comfy COMFY --python COMFY_VENV/bin/python --stand-ins DIR

Links the stand-ins (IF-I-XL and IF-II-L of the published shapes in bf16, T5-XXL's encoder) into
``COMFY/models/cascade`` and ``COMFY/models/text_encoders``, starts ``main.py --cpu`` on
127.0.0.1, queues workflows 08 and 09 one after the other as the frontend would (converted to
the API format, the loaders pointed at the stand-ins, 2 steps per stage) and prints how each
ended, its wall time and the server's peak resident memory; the links are removed afterwards.
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

from .comfy_server import Server, rss_mb
from .release.if_workflows import NAMES, STAND_INS, T5_NAME

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ("08_if_prompt_to_256", "09_if_s_search")


def prompt(workflow: str, folder: Path) -> dict:
    """``workflow`` in the API format, pointed at the stand-ins in ``folder``, 2 steps per
    stage."""
    from nodes import comfy_bridge
    from nodes.headless.executor import CLASSES
    from nodes.headless.graph import set_widget, to_prompt

    comfy_bridge.add_stage_dir(folder)  # the loaders' lists are checked when a widget is set
    wf = json.loads((ROOT / "workflows" / f"{workflow}.json").read_text())
    for target, value in STAND_INS.items():
        set_widget(wf, CLASSES, target=target, value=value)
    return to_prompt(wf, CLASSES)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.comfyui_if", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--comfy", required=True, type=Path, help="a ComfyUI checkout")
    p.add_argument("--python", default=sys.executable, help="ComfyUI's Python")
    p.add_argument("--stand-ins", required=True, type=Path)
    p.add_argument("--port", type=int, default=8197)
    args = p.parse_args(argv)
    links = {args.comfy / "models" / "cascade" / n: args.stand_ins / n for n in NAMES.values()}
    links[args.comfy / "models" / "text_encoders" / T5_NAME] = args.stand_ins / T5_NAME
    for link, target in links.items():
        link.unlink(missing_ok=True)
        link.symlink_to(target.resolve())
    bodies = {w: prompt(w, args.stand_ins) for w in WORKFLOWS}
    server = Server(args.comfy, args.python, port=args.port)
    peak, results = {"mb": 0.0}, []
    done = threading.Event()

    def watch():
        while not done.is_set():
            peak["mb"] = max(peak["mb"], rss_mb(server.proc.pid))
            time.sleep(0.5)

    try:
        server.wait_ready()
        threading.Thread(target=watch, daemon=True).start()
        for workflow, body in bodies.items():
            t0 = time.perf_counter()
            status = server.run(body, seconds=1800)
            results.append((workflow, status, time.perf_counter() - t0, peak["mb"]))
    finally:
        done.set()
        server.stop()
        for link in links:
            link.unlink(missing_ok=True)
    errors = [line for line in server.log.read_text().splitlines() if "Error" in line][-3:]
    for workflow, status, seconds, mb in results:
        print(f"{workflow} in ComfyUI ({args.comfy.name}, --cpu), ComfyUI's Load CLIP: {status} "
              f"in {seconds:.0f} s, server peak RSS so far {mb / 1024:.1f} GB")
    for line in errors:
        print("  " + line)
    return 0 if all(r[1] == "success" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
