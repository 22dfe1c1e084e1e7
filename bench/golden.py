"""Golden hashes for refactors that must not change behaviour.

    python -m bench.golden --out runs/golden > before.json     # before the change
    python -m bench.golden --out runs/golden > after.json      # after it
    python -m bench.golden --compare before.json after.json

It renders workflows 01-04 and 07 through the headless runner with fixed
seeds (hashing the decoded pixels: the PNG text chunks embed the workflow,
whose widget names may legitimately change), workflow 03 once more in 16 px
tiles (the SR stage and the refiner both tiled), workflows 05 and 06 on
seeded random-weight ADM-layout stand-ins (the ADM test fixtures' shapes,
converted with ``cascade_core.formats.convert``: classifier guidance, ADM-U,
tiles), and trains tiny fixed-seed runs of ``train.stage1``, ``train.stage2``
and ``train.shallow`` on 64 CIFAR-10 images, hashing every tensor of every
stage they write. Everything goes through the command lines, so the script
outlives renames of the Python API. Two cores, about three minutes.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "adm"
# render name -> (workflow, extra runner arguments); "{standins}" is the stand-ins' folder
RENDERS = {
    "01_base_then_sr": ("01_base_then_sr", []),
    "02_full_cascade": ("02_full_cascade", []),
    "03_upscale_your_image": ("03_upscale_your_image", []),
    "03_upscale_your_image+tile16": ("03_upscale_your_image", ["--set", "tile_size=16"]),
    "04_augmentation_sweep": ("04_augmentation_sweep", []),
    "05_imagenet_64_to_256+standins": ("05_imagenet_64_to_256", [
        "--stages", "{standins}", "--set", "steps=4", "--set", "1.stage_name=base.safetensors",
        "--set", "2.classifier_name=classifier.safetensors", "--set",
        "3.stage_name=upsampler.safetensors", "--set", "4.class_name=3"]),
    "06_upscale_photo_x4+standins": ("06_upscale_photo_x4", [
        "--stages", "{standins}", "--set", "steps=4", "--set",
        "2.stage_name=upsampler.safetensors", "--set", "4.class_name=3", "--set",
        "4.tile_size=32"]),
    "07_sweep_s_and_steps": ("07_sweep_s_and_steps", []),
}
# the ADM fixtures standing in for OpenAI's files: fixture -> (stage file, extra overrides)
STANDINS = {"adm64_new_order": ("base.safetensors", {}),
            "adm_classifier": ("classifier.safetensors", {"schedule": "cosine"}),
            "adm_upsampler": ("upsampler.safetensors", {})}
TRAIN_COMMON = ["--steps", "12", "--batch-size", "8", "--seed", "3", "--checkpoint-every", "6",
                "--no-progress", "--no-tensorboard", "--sample-every", "0"]
TRAINING = {
    "stage1": ["train.stage1", *TRAIN_COMMON],
    "stage2": ["train.stage2", *TRAIN_COMMON, "--resolution", "32", "--low-res", "16",
               "--blur-prob", "0.5"],
    "shallow": ["train.shallow", "--hidden", "16", "--blocks", "1", "--vit-depth", "1",
                "--vit-heads", "2",
                "--unet-channels", "8", "--batch-size", "4", "--epoch-size", "8", "--no-progress",
                "--no-tensorboard", "--perceptual-weight", "0", "--phase1-epochs", "1",
                "--phase2-epochs", "1",
                "--phase3-epochs", "1", "--timesteps", "50", "--coarse", "dae", "--seed", "5"],
}


def _run(args: list[str]):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr[-3000:]}")


def tiny_dataset(path: Path, count: int = 64) -> Path:
    """The first ``count`` CIFAR-10 training images (sorted paths), as an .npz with labels."""
    root = ROOT.parent / "shared" / "data" / "cifar10" / "train"
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    per_class = count // len(classes) + 1
    files = [(c, f) for c in classes for f in sorted((root / c).iterdir())[:per_class]][:count]
    images = np.stack([np.array(Image.open(f).convert("RGB")) for _, f in files])
    labels = np.array([classes.index(c) for c, _ in files])
    np.savez(path, images=images, labels=labels, class_names=np.array(classes))
    return path


def pixel_hash(png: Path) -> str:
    return hashlib.sha256(np.array(Image.open(png).convert("RGB")).tobytes()).hexdigest()[:16]


def weights_hash(path: Path) -> str:
    from safetensors.numpy import load_file
    tensors = load_file(str(path))
    h = hashlib.sha256()
    for key in sorted(tensors):
        h.update(key.encode())
        h.update(np.ascontiguousarray(tensors[key]).tobytes())
    return h.hexdigest()[:16]


def standins(folder: Path) -> Path:
    """Seeded random-weight ADM-layout files (the fixtures' shapes and seeds), converted to stage
    files by the command line, as a user converts a download."""
    import torch
    from safetensors import safe_open

    sys.path.insert(0, str(FIXTURES))
    from random_weights import random_state

    folder.mkdir(parents=True)
    for fixture, (name, extra) in STANDINS.items():
        with safe_open(str(FIXTURES / f"{fixture}.safetensors"), framework="pt") as f:
            meta = f.metadata()
        src = folder / f"{fixture}.pt"
        torch.save(random_state(json.loads(meta["shapes"]), int(meta["seed"])), src)
        sets = []
        for key, value in {**json.loads(meta["overrides"]), **extra}.items():
            text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
            sets += ["--set", f"{key}={text}"]
        _run(["cascade_core.formats.convert", str(src), str(folder / name), "--dtype", "fp32",
              *sets])
        src.unlink()
    return folder


def record(out: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)  # image counters and training runs start afresh
    out.mkdir(parents=True)
    hashes = {}
    released = standins(out / "standins")
    for name, (workflow, extra) in RENDERS.items():
        folder = out / "render" / name
        extra = [a.replace("{standins}", str(released)) for a in extra]
        _run(["nodes.run_workflow", f"workflows/{workflow}.json", "--out", str(folder), "--set",
              "seed=11", "--threads", "1", *extra])
        for png in sorted(folder.rglob("*.png")):
            hashes[f"{name}/{png.relative_to(folder)}"] = pixel_hash(png)
    data = tiny_dataset(out / "tiny.npz")
    for name, args in TRAINING.items():
        run_dir = out / "train" / name
        _run([*args, "--data", str(data), "--out", str(run_dir)])
        for stage in sorted(run_dir.rglob("*.safetensors")):
            hashes[f"{name}/{stage.relative_to(run_dir)}"] = weights_hash(stage)
    return hashes


def compare(before: dict, after: dict) -> int:
    differ = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    for key in differ:
        print(f"DIFFERS {key}: {before.get(key)} -> {after.get(key)}")
    print(f"{len(before)} hashes before, {len(after)} after, {len(differ)} differ")
    return 1 if differ else 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.golden", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/golden", help="scratch folder (default runs/golden)")
    p.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"),
                   help="compare two recorded JSON files")
    args = p.parse_args(argv)
    if args.compare:
        before, after = (json.loads(Path(f).read_text()) for f in args.compare)
        return compare(before, after)
    print(json.dumps(record(Path(args.out)), indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
