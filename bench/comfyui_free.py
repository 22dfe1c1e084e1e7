"""In a real ComfyUI server: load a stage through the pack, press /free, and measure the server.

    python -m bench.release.released stand-ins COMFY/models/cascade 64_256_upsampler.pt
    python -m bench.comfyui_free --comfy COMFY --python COMFY_VENV/bin/python

Starts ``main.py --cpu`` on 127.0.0.1 (the pack must be in ``COMFY/custom_nodes/``), reads what
the Stage and Classifier Loaders list, queues Stage Loader -> Stage Info for ``--stage``, then
posts ``/free`` with ``unload_models`` and ``free_memory``, and prints the server's resident
memory at each point. Passes when /free gives back at least 80 % of the stage file's size.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def rss_mb(pid: int) -> float:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf(
        "SC_PAGE_SIZE") / 2 ** 20


class Server:
    """A ComfyUI server on the loopback, stopped on exit."""

    def __init__(self, comfy: Path, python: str, port: int):
        self.url = f"http://127.0.0.1:{port}"
        log = open(Path("/tmp") / f"comfyui_free_{port}.log", "w")
        self.proc = subprocess.Popen([python, "main.py", "--cpu", "--listen", "127.0.0.1",
                                      "--port", str(port)], cwd=comfy, stdout=log,
                                     stderr=subprocess.STDOUT)

    def get(self, path: str):
        return json.loads(urllib.request.urlopen(self.url + path, timeout=60).read())

    def post(self, path: str, body: dict):
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        return urllib.request.urlopen(req, timeout=60).read()

    def wait_ready(self, seconds: int = 180):
        for _ in range(seconds):
            try:
                return self.get("/system_stats")
            except OSError:
                time.sleep(1)
        raise RuntimeError("the ComfyUI server did not start (see /tmp/comfyui_free_*.log)")

    def run(self, prompt: dict, seconds: int = 600) -> str:
        prompt_id = json.loads(self.post("/prompt", {"prompt": prompt}))["prompt_id"]
        for _ in range(seconds):
            history = self.get(f"/history/{prompt_id}")
            if history:
                return history[prompt_id]["status"]["status_str"]
            time.sleep(1)
        raise RuntimeError("the prompt did not finish")


def listed(server: Server, node: str, widget: str) -> list:
    return server.get(f"/object_info/{node}")[node]["input"]["required"][widget][0]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.comfyui_free", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--comfy", required=True, type=Path, help="a ComfyUI checkout")
    p.add_argument("--python", default=sys.executable, help="ComfyUI's Python")
    p.add_argument("--stage", default="64_256_upsampler.pt")
    p.add_argument("--port", type=int, default=8199)
    args = p.parse_args(argv)
    size = (args.comfy / "models" / "cascade" / args.stage).stat().st_size / 2 ** 20
    server = Server(args.comfy, args.python, args.port)
    try:
        server.wait_ready()
        print("Stage Loader lists:", listed(server, "CDMStageLoader", "stage_name"))
        print("Classifier Loader lists:", listed(server, "CDMClassifierLoader",
                                                 "classifier_name"))
        idle = rss_mb(server.proc.pid)
        status = server.run({
            "1": {"class_type": "CDMStageLoader", "inputs": {"stage_name": args.stage}},
            "2": {"class_type": "CDMStageInfo", "inputs": {"stage": ["1", 0]}}})
        time.sleep(2)
        loaded = rss_mb(server.proc.pid)
        server.post("/free", {"unload_models": True, "free_memory": True})
        time.sleep(5)
        freed = rss_mb(server.proc.pid)
    finally:
        server.proc.terminate()
        server.proc.wait(timeout=60)
    given_back = loaded - freed
    ok = status == "success" and given_back >= 0.8 * size
    print(f"{args.stage} ({size:.0f} MiB): prompt {status}; server RSS idle {idle:.0f} MB, with "
          f"the stage {loaded:.0f} MB, after /free {freed:.0f} MB: {given_back:.0f} MB given back "
          f"= {given_back / size:.0%} of the file ({'passed' if ok else 'FAILED'}: >= 80 %)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
