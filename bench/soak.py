"""Soak the headless runner: every workflow many times in one process, bad inputs mixed in.

    python -m bench.soak                 # 100 runs on the shipped stages, results/soak.json
    python -m bench.soak --quick         # 56 runs (CI)
    python -m bench.soak --stages DIR    # other stage files under the shipped names

Each run is one of the four shipped workflows (fixed seed, 2 steps per stage)
or one of the bad inputs the runner must refuse. It checks that:

* resident memory stays flat: after the warm-up (at least 10 runs, and one pass
  over every case, whose first run allocates for good), the least-squares slope
  of the resident set size is under 1 MB per 10 runs;
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
WARMUP, SLOPE_LIMIT_MB = 10, 1.0


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


BAD = {  # name: (workflow index, edit of the workflow, words the error must contain)
    "batch_size 0": (0, _set("CDMBaseSampler", "batch_size", 0), "batch_size = 0"),
    "steps -3": (0, _set("CDMBaseSampler", "steps", -3), "steps = -3"),
    "steps 'ten'": (0, _set("CDMBaseSampler", "steps", "ten"), "expected an integer"),
    "guidance nan": (0, _set("CDMBaseSampler", "guidance", float("nan")),
                     "expected a finite number"),
    "dangling link": (0, _dangle, "link 999"),
    "nodes as a dict": (0, _as_dict, "'nodes' must be a list"),
    "prefix ../..": (0, _set("SaveImage", "filename_prefix", "../../escaped/pwn"),
                     "must stay inside the output folder"),
    "absolute prefix": (0, _set("SaveImage", "filename_prefix", "/tmp/cdm-soak/x"),
                        "must stay inside the output folder"),
    "stage outside": (0, _set("CDMStageLoader", "stage_name", "../../../outside/evil.safetensors"),
                      "is not one of"),
    "image outside": (2, _set("LoadImage", "image", "../../../outside/secret.png"),
                      "inside an input folder"),
}


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
    return _pixels(run(wf, out, GOOD, stage_dirs=stages, input_dirs=[ROOT / "workflows"]))


def _bad(name: str, work: Path, stages: list) -> str | None:
    """None when the bad input gives its clear error and writes nothing, else what went wrong."""
    index, edit, words = BAD[name]
    wf = json.loads(WORKFLOWS[index].read_text())
    edit(wf)
    path = work / "bad.json"
    path.write_text(json.dumps(wf))
    out = work / "bad-out"
    try:
        run(path, out, GOOD[:1], stage_dirs=stages, input_dirs=[ROOT / "workflows"])
    except CascadeError as e:
        if words not in str(e):
            return f"{name}: unexpected message {str(e)[:200]!r}"
        if out.exists() or Path("/tmp/cdm-soak").exists() or (work.parent / "escaped").exists():
            return f"{name}: something was written"
        return None
    except Exception as e:  # anything but our clear error is a failure of the runner
        return f"{name}: {type(e).__name__}: {e}"
    return f"{name}: ran without an error"


def soak(runs: int, stages: list) -> dict:
    """The soak's figures: RSS samples, the slope after warm-up, failures, image hashes."""
    plan = [("good", i) for i in range(len(WORKFLOWS))] + [("bad", n) for n in BAD]
    hashes, failures, samples = {}, [], []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "a" / "b" / "work"
        work.mkdir(parents=True)
        t0 = time.time()
        for k in range(runs):
            verdict, what = plan[k % len(plan)]
            if verdict == "good":
                digest = _good(what, work, stages)
                if hashes.setdefault(what, digest) != digest:
                    failures.append(f"workflow {WORKFLOWS[what].name}: images changed at run {k}")
            elif (problem := _bad(what, work, stages)) is not None:
                failures.append(problem)
            samples.append(rss_mb())
        seconds = time.time() - t0
    warmup = max(WARMUP, len(plan))
    after = np.array(samples[warmup:])
    slope = float(np.polyfit(np.arange(len(after)), after, 1)[0] * 10) if len(after) > 2 else 0.0
    return {"runs": runs, "seconds": round(seconds, 1), "rss_mb_first": round(samples[0], 1),
            "warmup_runs": warmup, "rss_mb_after_warmup": round(samples[min(warmup, runs - 1)], 1),
            "rss_mb_last": round(samples[-1], 1), "rss_slope_mb_per_10_runs": round(slope, 3),
            "bad_cases": len(BAD), "failures": failures,
            "images": {WORKFLOWS[i].name: h for i, h in hashes.items()}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--quick", action="store_true", help="56 runs, nothing saved")
    p.add_argument("--stages", action="append", default=[], metavar="DIR")
    args = p.parse_args(argv)
    result = soak(56 if args.quick else args.runs, args.stages)
    print(json.dumps(result, indent=1))
    ok = not result["failures"] and result["rss_slope_mb_per_10_runs"] < SLOPE_LIMIT_MB
    print(f"soak {'passed' if ok else 'FAILED'}: {result['runs']} runs in {result['seconds']} s, "
          f"RSS {result['rss_mb_after_warmup']} -> {result['rss_mb_last']} MB after warm-up "
          f"(slope {result['rss_slope_mb_per_10_runs']:+.3f} MB per 10 runs), "
          f"{len(result['failures'])} failure(s)")
    if not args.quick and not args.stages:
        save("soak", result)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
