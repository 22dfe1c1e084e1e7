"""A real ComfyUI server on the loopback for the bench scripts that need one (stdlib only, so a
browser-driving script can import it without torch)."""
from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path


def rss_mb(pid: int) -> float:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf(
        "SC_PAGE_SIZE") / 2 ** 20


class Server:
    """A ComfyUI server on the loopback, stopped on exit."""

    def __init__(self, comfy: Path, python: str, *, port: int, extra: tuple = ()):
        self.url = f"http://127.0.0.1:{port}"
        self.log = Path("/tmp") / f"comfyui_{port}.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([python, "main.py", "--cpu", "--listen", "127.0.0.1",
                                          "--port", str(port), *extra], cwd=comfy, stdout=log,
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
        raise RuntimeError(f"the ComfyUI server did not start (see {self.log})")

    def run(self, prompt: dict, seconds: int = 600) -> str:
        prompt_id = json.loads(self.post("/prompt", {"prompt": prompt}))["prompt_id"]
        for _ in range(seconds):
            history = self.get(f"/history/{prompt_id}")
            if history:
                return history[prompt_id]["status"]["status_str"]
            time.sleep(1)
        raise RuntimeError("the prompt did not finish")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=60)
