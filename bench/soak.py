"""Soak the headless runner: every workflow many times in one process, bad inputs mixed in.

    python -m bench.soak                 # warm-up + 100 runs on the shipped stages
    python -m bench.soak --quick         # warm-up + 40 runs (CI)
    python -m bench.soak --stages DIR    # other stage files under the shipped names

A warm-up pass runs every case once (each first run allocates for good); then
come the measured runs: one of the four shipped workflows (fixed seed, 2 steps
per stage), with one run in ten a bad input the runner must refuse, taken in
turn from ``BAD`` (malformed workflows and files, out-of-range widgets, paths
that leave their folders, a zip bomb, a 10,000-pixel image). It checks that:

* resident memory stays flat: the least-squares slope of the resident set size
  over the measured runs is under 1 MB per 10 runs;
* every bad input gives its clear error (a WorkflowError or CascadeError with
  the expected words, no other exception) and writes nothing;
* the good runs keep producing identical images for identical seeds.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from cascade_core import CascadeError
from nodes.headless.executor import CLASSES, run
from nodes.headless.graph import widget_positions

from .common import save

ROOT = Path(__file__).resolve().parents[1]
# the four workflows of the shipped cascade (05/06 need OpenAI's files: bench.release.released
# runs them)
WORKFLOWS = sorted(p for p in (ROOT / "workflows").glob("*.json") if p.name[:2] <= "04")
GOOD = ["seed=5", "steps=2"]
BAD_EVERY, SLOPE_LIMIT_MB = 10, 1.0


def _set(node_type: str, widget: str, value):
    """An edit that sets ``widget`` of every ``node_type`` node to ``value``."""
    def edit(wf: dict):
        for node in wf["nodes"]:
            if node["type"] == node_type:
                node["widgets_values"][widget_positions(node, CLASSES[node_type])[widget]] = value
    return edit


def _dangle(wf):
    wf["nodes"][2]["inputs"][0]["link"] = 999


def _as_dict(wf):
    wf["nodes"] = {str(n["id"]): n for n in wf["nodes"]}


def _first(key, value):
    def edit(wf):
        wf["nodes"][0][key] = value
    return edit


def _link_as_list(wf):
    next(i for n in wf["nodes"] for i in n.get("inputs") or []
         if i.get("link") is not None)["link"] = [5]


def _control_as_list(wf):
    node = next(n for n in wf["nodes"] if n["type"] == "CDMBaseSampler")
    node["widgets_values"][widget_positions(node, CLASSES["CDMBaseSampler"])["seed"] + 1] = ["x"]


BAD = {  # name: (workflow index, edit of the workflow, words the error must contain)
    "batch_size 0": (0, _set("CDMBaseSampler", "batch_size", 0), "batch_size = 0"),
    "steps -3": (0, _set("CDMBaseSampler", "steps", -3), "steps = -3"),
    "steps 'ten'": (0, _set("CDMBaseSampler", "steps", "ten"), "expected an integer"),
    "guidance nan": (0, _set("CDMBaseSampler", "guidance", float("nan")),
                     "expected a finite number"),
    "guidance 50": (0, _set("CDMBaseSampler", "guidance", 50.0), "guidance = 50.0"),
    "dangling link": (0, _dangle, "link 999"),
    "nodes as a dict": (0, _as_dict, "'nodes' must be a list"),
    "widgets_values a string": (0, _first("widgets_values", "cifar10-base16.safetensors"),
                                "widgets_values must be a list"),
    "link id a list": (0, _link_as_list, "must be a link id"),
    "seed control a list": (0, _control_as_list, "the control after 'seed'"),
    "binary workflow": (0, lambda wf: b"\x89PNG\r\n\x1a\n\xff\xfe\x00", "is not text"),
    "prefix ../..": (0, _set("SaveImage", "filename_prefix", "../../escaped/pwn"),
                     "must stay inside the output folder"),
    "absolute prefix": (0, _set("SaveImage", "filename_prefix", "/tmp/cdm-soak/x"),
                        "must stay inside the output folder"),
    "prefix .": (0, _set("SaveImage", "filename_prefix", "."), "names a folder"),
    "prefix x/..": (0, _set("SaveImage", "filename_prefix", "x/.."), "names a folder"),
    "prefix NUL": (0, _set("SaveImage", "filename_prefix", "a\x00b"), "control character"),
    "prefix of 300": (0, _set("SaveImage", "filename_prefix", "p" * 300), "too long"),
    "stage outside": (0, _set("CDMStageLoader", "stage_name", "../../../outside/evil.safetensors"),
                      "is not one of"),
    "zip bomb stage": (0, _set("CDMStageLoader", "stage_name", "soak-bomb.pt"), "declares"),
    "truncated stage": (0, _set("CDMStageLoader", "stage_name", "soak-cut.safetensors"),
                        "soak-cut.safetensors"),
    "image outside": (2, _set("LoadImage", "image", "../../../outside/secret.png"),
                      "inside an input folder"),
    "10000-pixel image": (2, _set("LoadImage", "image", "soak-huge.png"), "is too large"),
}


def write_bad_files(folder: Path, stages: list):
    """The files some bad cases name: a zip-bomb .pt, a stage file cut in half, and a PNG whose
    header claims 10000x10000 pixels."""
    import struct
    import zipfile
    import zlib

    with zipfile.ZipFile(folder / "soak-bomb.pt", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", b"\0" * (64 * 2 ** 20))
    base = next(Path(d) / "cifar10-base16.safetensors" for d in [*stages, ROOT / "weights"]
                if (Path(d) / "cifar10-base16.safetensors").is_file())
    data = base.read_bytes()
    (folder / "soak-cut.safetensors").write_bytes(data[: len(data) // 2])
    png = folder / "soak-huge.png"
    Image.new("RGB", (1, 1)).save(png)
    raw = bytearray(png.read_bytes())
    raw[16:24] = struct.pack(">II", 10_000, 10_000)
    raw[29:33] = struct.pack(">I", zlib.crc32(bytes(raw[12:29])))
    png.write_bytes(bytes(raw))


def rss_mb() -> float:
    """Resident set size of this process in MB (Linux /proc; peak RSS elsewhere)."""
    statm = Path("/proc/self/statm")
    if statm.is_file():
        return int(statm.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 10


def _pixels(paths) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(np.array(Image.open(p)).tobytes())
    return h.hexdigest()[:16]


def _good(i: int, work: Path, stages: list) -> str:
    wf = WORKFLOWS[i % len(WORKFLOWS)]
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    return _pixels(run(wf, out, GOOD, stage_dirs=stages,
                       input_dirs=[ROOT / "workflows", work / "inputs"]))


def _bad(name: str, work: Path, stages: list) -> str | None:
    """None when the bad input gives its clear error and writes nothing, else what went wrong."""
    index, edit, words = BAD[name]
    wf = json.loads(WORKFLOWS[index].read_text())
    raw = edit(wf)
    path = work / "bad.json"
    path.write_bytes(raw if isinstance(raw, bytes) else json.dumps(wf).encode())
    out = work / "bad-out"
    try:
        run(path, out, GOOD[:1], stage_dirs=[*stages, work / "inputs"],
            input_dirs=[ROOT / "workflows", work / "inputs"])
    except CascadeError as e:
        if words not in str(e):
            return f"{name}: unexpected message {str(e)[:200]!r}"
        if out.exists() or Path("/tmp/cdm-soak").exists() or (work.parent / "escaped").exists():
            return f"{name}: something was written"
        return None
    except Exception as e:  # anything but our clear error is a failure of the runner
        return f"{name}: {type(e).__name__}: {e}"
    return f"{name}: ran without an error"


def schedule(runs: int) -> list[tuple[str, object]]:
    """The warm-up pass (every case once), then ``runs`` runs: a bad input every BAD_EVERY-th,
    taken in turn, the good workflows in turn otherwise."""
    warmup = [("good", i) for i in range(len(WORKFLOWS))] + [("bad", n) for n in BAD]
    bad, measured = list(BAD), []
    for k in range(runs):
        if k % BAD_EVERY == BAD_EVERY - 1:
            measured.append(("bad", bad[(k // BAD_EVERY) % len(bad)]))
        else:
            measured.append(("good", len(measured) % len(WORKFLOWS)))
    return warmup + measured


def soak(runs: int, stages: list) -> dict:
    """The soak's figures: RSS samples, the slope over the measured runs, failures, hashes."""
    plan = schedule(runs)
    warmup = len(plan) - runs
    hashes, failures, samples = {}, [], []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "a" / "b" / "work"
        (work / "inputs").mkdir(parents=True)
        write_bad_files(work / "inputs", stages)
        t0 = time.time()
        for k, (verdict, what) in enumerate(plan):
            if verdict == "good":
                digest = _good(what, work, stages)
                if hashes.setdefault(what, digest) != digest:
                    failures.append(f"workflow {WORKFLOWS[what].name}: images changed at run {k}")
            elif (problem := _bad(what, work, stages)) is not None:
                failures.append(problem)
            samples.append(rss_mb())
        seconds = time.time() - t0
    after = np.array(samples[warmup:])
    slope = float(np.polyfit(np.arange(len(after)), after, 1)[0] * 10) if len(after) > 2 else 0.0
    return {"runs": runs, "warmup_runs": warmup, "bad_runs": sum(v == "bad" for v, _ in plan),
            "seconds": round(seconds, 1), "rss_mb_first": round(samples[0], 1),
            "rss_mb_after_warmup": round(samples[warmup - 1], 1),
            "rss_mb_last": round(samples[-1], 1), "rss_slope_mb_per_10_runs": round(slope, 3),
            "bad_cases": len(BAD), "failures": failures,
            "images": {WORKFLOWS[i].name: h for i, h in hashes.items()}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--quick", action="store_true", help="40 measured runs, nothing saved")
    p.add_argument("--stages", action="append", default=[], metavar="DIR")
    args = p.parse_args(argv)
    result = soak(40 if args.quick else args.runs, args.stages)
    print(json.dumps(result, indent=1))
    ok = not result["failures"] and result["rss_slope_mb_per_10_runs"] < SLOPE_LIMIT_MB
    print(f"soak {'passed' if ok else 'FAILED'}: {result['warmup_runs']} warm-up + "
          f"{result['runs']} runs ({result['bad_runs']} bad) in {result['seconds']} s, "
          f"RSS {result['rss_mb_after_warmup']} -> {result['rss_mb_last']} MB after warm-up "
          f"(slope {result['rss_slope_mb_per_10_runs']:+.3f} MB per 10 runs), "
          f"{len(result['failures'])} failure(s)")
    if not args.quick and not args.stages:
        save("soak", result)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
