"""OpenAI's released ADM files at their real shapes, with random weights (the real files cannot
be downloaded here).

    python -m bench.release.released workflows   # 05, 06 and 11 end to end in the headless runner
    python -m bench.release.released speed       # seconds per model evaluation of every table entry
    python -m bench.release.released stand-ins DIR [FILE ...]   # write the random-weight files

``workflows``: random weights with each file's exact keys and shapes (from the manifests the
fixture script built with the reference code) are saved as a released-style ``.pt``, converted
with ``python -m cascade_core.formats.convert`` (fp16), and workflows 05, 06 and 11 run on the
converted files at 2 steps per stage; wall time and peak resident memory are recorded.

``speed``: one model evaluation at batch 1, fp32 and bf16 autocast, on the current threads, for
each distinct architecture in the table (classifiers: one gradient, as guidance uses them).
Results go to ``bench/results/released_*.json``; the README quotes them. Image quality is not
measured: with random weights there is none.

``stand-ins``: the random-weight ``.pt`` files themselves, under their released names, for a
tester who wants to load workflows 05 and 06 in a real ComfyUI (default: every file of the
table whose manifest is known).
"""
from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import cascade_core as cc
from cascade_core.formats import adm
from cascade_core.formats.adm_table import RELEASED

from ..common import save

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "adm"
WORKFLOW_FILES = {"05_imagenet_64_to_256.json": ("64x64_diffusion.pt", "64x64_classifier.pt",
                                                 "64_256_upsampler.pt"),
                  "06_upscale_photo_x4.json": ("64_256_upsampler.pt",),
                  "11_imagenet_regions_wide.json": ("64x64_diffusion.pt", "64_256_upsampler.pt")}


def manifests() -> dict:
    with gzip.open(FIXTURES / "manifests.json.gz", "rt") as f:
        return json.load(f)


def random_released(name: str, folder: Path) -> Path:
    """A released-style .pt of ``name`` with random weights of its real shapes."""
    sys.path.insert(0, str(FIXTURES))
    from random_weights import random_state

    path = folder / name
    torch.save(random_state(manifests()[name], seed=7), path)
    return path


def write_stand_ins(folder, files) -> int:
    """Write random-weight stand-ins of released files into ``folder``; exit code."""
    known = manifests()
    if not folder:
        print("error: stand-ins needs a folder: python -m bench.release.released stand-ins DIR",
              file=sys.stderr)
        return 2
    unknown = sorted(set(files) - set(known))
    if unknown:
        print(f"error: no manifest for {unknown}: expected some of {sorted(known)}",
              file=sys.stderr)
        return 2
    Path(folder).mkdir(parents=True, exist_ok=True)
    for name in files or sorted(known):
        path = random_released(name, Path(folder))
        print(f"wrote {path} ({path.stat().st_size / 2 ** 20:.0f} MiB)")
    return 0


def run_in_child(args: list[str]) -> float:
    """Run ``python -m nodes.run_workflow ARGS`` in a fresh process; its peak RSS in MB."""
    code = ("import resource, sys; from nodes.run_workflow import main; rc = main(sys.argv[1:]); "
            "print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024); "
            "sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True,
                          text=True)
    if done.returncode:
        raise SystemExit(f"run_workflow {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return float(done.stdout.rsplit("PEAK", 1)[1])


def run_workflows(steps: int) -> dict:
    """Convert random-weight files of the real shapes (with the command line), then run 05 and
    06 each in a fresh process: wall time and that process's peak resident memory."""
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        stages = tmp / "stages"
        stages.mkdir()
        for name in sorted({f for files in WORKFLOW_FILES.values() for f in files}):
            src = random_released(name, tmp)
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "cascade_core.formats.convert", str(src),
                            str(stages / name.replace(".pt", ".safetensors")), "--dtype", "fp16"],
                           cwd=ROOT, check=True, capture_output=True)
            src.unlink()
            print(f"converted {name} in {time.perf_counter() - t0:.1f} s", flush=True)
        for wf, files in WORKFLOW_FILES.items():
            args = [str(ROOT / "workflows" / wf), "--out", str(tmp / "out" / wf), "--stages",
                    str(stages), "--set", f"steps={steps}"]
            for f in files:
                widget = "classifier_name" if "classifier" in f else "stage_name"
                node = _node_with(ROOT / "workflows" / wf, f)
                args += ["--set", f"{node}.{widget}={f.replace('.pt', '.safetensors')}"]
            t0 = time.perf_counter()
            peak = run_in_child(args)
            saved = sorted((tmp / "out" / wf).rglob("*.png"))
            results[wf] = {"seconds": round(time.perf_counter() - t0, 1), "steps": steps,
                           "peak_rss_mb": round(peak), "images": len(saved),
                           "sizes": sorted({_size(p) for p in saved})}
            print(wf, results[wf], flush=True)
    return results


def _node_with(workflow: Path, file: str) -> int:
    data = json.loads(workflow.read_text())
    return next(n["id"] for n in data["nodes"] if file in (n.get("widgets_values") or []))


def _size(path: Path) -> str:
    from PIL import Image

    with Image.open(path) as im:
        return f"{im.width}x{im.height}"


def evaluation_seconds(entry, shapes: dict, dtype: torch.dtype) -> float:
    """Seconds of one evaluation (classifiers: forward and gradient) at batch 1, after a warm-up
    at a quarter of the pixels (classifiers: at full size, they are small)."""
    cfg = adm.adm_config(shapes, entry.files[0])
    classifier = isinstance(cfg, cc.ClassifierConfig)
    model = (cc.NoisyClassifier(cfg) if classifier else cc.Stage(cfg)).eval()
    labels = torch.tensor([1]) if cfg.num_classes else None

    def once(size: int):
        x = torch.randn(1, 3, size, size)
        with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            if classifier:
                model.log_prob_grad(x, torch.tensor([3.0]), torch.tensor([1]))
                return
            low = torch.randn(1, 3, size // cfg.factor, size // cfg.factor)
            with torch.no_grad():
                model(x, torch.tensor([500.0]), cond=low if cfg.role == "sr" else None,
                      labels=labels)

    once(cfg.resolution if classifier else cfg.resolution // 2)
    t0 = time.perf_counter()
    once(cfg.resolution)
    return time.perf_counter() - t0


def speed() -> dict:
    rows = {}
    known = manifests()
    for entry in RELEASED:
        name = next(f for f in entry.files if f in known)
        shapes = {k: tuple(v) for k, v in known[name].items()}
        params = sum(int(torch.tensor(s).prod()) for s in shapes.values())
        row = {"files": list(entry.files), "parameters_m": round(params / 1e6, 1),
               "size_fp16_mb": round(params * 2 / 2 ** 20)}
        for label, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            row[f"s_per_eval_{label}"] = round(evaluation_seconds(entry, shapes, dtype), 2)
        rows[name] = row
        print(name, row, flush=True)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.release.released", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=("workflows", "speed", "stand-ins"))
    p.add_argument("folder", nargs="?", help="stand-ins: where to write the files")
    p.add_argument("files", nargs="*", help="stand-ins: which released names (default: all)")
    p.add_argument("--steps", type=int, default=2)
    args = p.parse_args(argv)
    if args.what == "stand-ins":
        return write_stand_ins(args.folder, args.files)
    if args.what == "workflows":
        out = save("released_workflows", {"results": run_workflows(args.steps)})
    else:
        out = save("released_speed", {"threads": torch.get_num_threads(), "results": speed()})
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
