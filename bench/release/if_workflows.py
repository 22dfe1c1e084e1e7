"""Workflows 08 and 09 end to end in the headless runner, on random-weight stand-ins of the
published shapes: IF-I-XL (4.3B parameters), IF-II-L (1.2B) and T5-v1.1-XXL's encoder (4.8B),
all stored in bf16, at 2 steps per stage.

    python -m bench.release.if_workflows --dir /tmp/if-stand-ins     # ~21 GB written there

Writes the stand-ins once (one model in memory at a time; T5's tokenizer is the test fixture's
tiny SentencePiece model, since T5's own cannot be downloaded here), then runs each workflow in
its own process with ``--set`` pointing the loaders at them, and prints the wall time and the
process's peak resident memory. Image quality means nothing here (random weights); what is
measured is that the graphs run at the real sizes, how long, and in how much memory.
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

import cascade_core as cc
from cascade_core.formats import deepfloyd_config
from cascade_core.models.t5 import T5Config, T5Encoder

from ..speed.if_speed import configs, random_

ROOT = Path(__file__).resolve().parents[2]
SPIECE = ROOT / "tests" / "fixtures" / "t5" / "spiece.model"
NAMES = {"IF-I-XL": "IF-I-XL-stand-in.safetensors", "IF-II-L": "IF-II-L-stand-in.safetensors"}
T5_NAME = "t5xxl-stand-in.safetensors"
# workflows 08 and 09 pointed at the stand-ins, 2 steps per stage (by node title and widget)
STAND_INS = {"IF-I-XL (64px).stage_name": NAMES["IF-I-XL"],
             "IF-II-L (64->256px).stage_name": NAMES["IF-II-L"],
             "T5-v1.1-XXL.clip_name": T5_NAME, "steps": "2"}


def write_stand_ins(folder: Path):
    """The two stages as stage files of ours and T5's encoder, in bf16, where absent."""
    folder.mkdir(parents=True, exist_ok=True)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        for name, config in configs(quick=False).items():
            path = folder / NAMES[name]
            if path.is_file():
                continue
            with torch.device("meta"):
                stage = cc.Stage(deepfloyd_config.from_diffusers(config, name))
            stage = stage.to_empty(device="cpu")
            random_(stage)
            cc.save_stage(stage, path, dtype="bf16")
            print(f"wrote {path.name}: {stage.num_parameters() / 1e9:.2f}B parameters")
            del stage
        if not (folder / T5_NAME).is_file():
            with torch.device("meta"):
                t5 = T5Encoder(T5Config())
            t5 = t5.to_empty(device="cpu")
            random_(t5)
            from safetensors.torch import save_file
            save_file({k: v.contiguous() for k, v in t5.state_dict().items()},
                      str(folder / T5_NAME))
            print(f"wrote {T5_NAME}: {sum(p.numel() for p in t5.parameters()) / 1e9:.2f}B")
            del t5
    finally:
        torch.set_default_dtype(default)
    shutil.copy(SPIECE, folder / "spiece.model")


def run(workflow: str, folder: Path, out: Path) -> dict:
    """One workflow in its own process: (seconds, peak RSS in GB, exit code)."""
    cmd = [sys.executable, "-m", "nodes.run_workflow", f"workflows/{workflow}.json",
           "--out", str(out / workflow), "--stages", str(folder)]
    for k, v in STAND_INS.items():
        cmd += ["--set", f"{k}={v}"]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2 ** 20  # KB -> GB
    return {"workflow": workflow, "seconds": round(seconds, 1), "peak_rss_gb": round(peak, 1),
            "exit": done.returncode, "tail": (done.stdout + done.stderr)[-600:]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.release.if_workflows", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", type=Path, required=True, help="where the stand-ins are written")
    p.add_argument("--out", type=Path, default=Path("runs/if_workflows"))
    p.add_argument("--json", type=Path, help="append the results to this JSON-lines file")
    args = p.parse_args(argv)
    write_stand_ins(args.dir)
    rows = [run(w, args.dir, args.out) for w in ("08_if_prompt_to_256", "09_if_s_search")]
    for r in rows:
        print(f"{r['workflow']}: exit {r['exit']}, {r['seconds']} s, peak RSS (largest child so "
              f"far) {r['peak_rss_gb']} GB")
        if r["exit"]:
            print(r["tail"])
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(r) + "\n")
    return max(r["exit"] for r in rows)


if __name__ == "__main__":
    sys.exit(main())
