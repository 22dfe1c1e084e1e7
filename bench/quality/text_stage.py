"""A text-conditioned base stage against the class-conditional one of the same size and steps.

    python -m bench.quality.text_stage train --out runs/text_bench --steps 6000
    python -m bench.quality.text_stage score --out runs/text_bench

``train`` writes a tiny random T5 v1.1 encoder (the prompt fixtures' 2-layer shape, width 32,
with their SentencePiece model) and a captions file giving every CIFAR-10 training image the
caption "a photo of a <class>", then trains two base stages at 16 px with the ``small`` preset,
the same seed and the same steps, side by side (one thread each): one on the classes
(``train.stage1`` as the shipped base stage was trained), one on the captions through the
encoder. ``score`` scores both with the model card's protocol (``train.eval``: 1,000 samples,
KID against 2,000 test images at the stage's size, class agreement by our classifier): the class
stage sampled by class, the text stage by the prompt naming that class. Results go to
``bench/results/text_stage.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from ..common import save

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "cifar10"
TEMPLATE = "a photo of a {}"
STAGE = ["--preset", "small", "--resolution", "16", "--seed", "0", "--no-progress",
         "--no-tensorboard", "--log-every", "100", "--sample-every", "0"]


def prepare(out: Path) -> tuple[Path, Path]:
    """The tiny encoder and the captions file, in ``out``."""
    sys.path.insert(0, str(ROOT / "tests"))
    from helpers import class_captions, tiny_text_encoder

    encoder = out / "encoder" / "tiny-t5.safetensors"
    if not encoder.is_file():
        tiny_text_encoder(encoder.parent)
    captions = out / "captions.jsonl"
    if not captions.is_file():
        class_captions(DATA / "train", captions, template=TEMPLATE)
    return encoder, captions


def train(out: Path, steps: int) -> int:
    """Both stages, concurrently, one thread each; resumable (``--resume`` when a run exists)."""
    encoder, captions = prepare(out)
    runs = {"class": [], "text": ["--captions", str(captions), "--text-encoder", str(encoder)]}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = []
    for name, extra in runs.items():
        run = out / name
        resume = ["--resume"] if (run / "config.json").is_file() else []
        cmd = [sys.executable, "-m", "train.stage1", "--data", str(DATA / "train"), "--out",
               str(run), "--steps", str(steps), *STAGE, *extra, *resume]
        log = open(out / f"{name}.log", "a")
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log))
    return max(p.wait() for p in procs)


def score(out: Path, steps: int, guidance: float) -> dict:
    """train.eval on both stages, the model card's protocol; the text stage prompted."""
    encoder, _ = prepare(out)
    results = {}
    for name in ("class", "text"):
        cmd = [sys.executable, "-m", "train.eval", "--base", str(out / name / "latest.safetensors"),
               "--num", "1000", "--ref", str(DATA / "test"), "--ref-num", "2000", "--metrics",
               "kid,acc", "--steps", str(steps), "--guidance", str(guidance)]
        if name == "text":
            cmd += ["--text-encoder", str(encoder), "--prompt", TEMPLATE]
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"train.eval failed for {name}:\n{done.stderr[-2000:]}")
        result = json.loads(done.stdout[done.stdout.index("{"):])
        results[name] = {k: result[k] for k in ("kid", "kid_std", "class_accuracy")}
        print(name, results[name], flush=True)
    return results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.quality.text_stage", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=("train", "score"))
    p.add_argument("--out", default="runs/text_bench")
    p.add_argument("--steps", type=int, default=6000, help="train: optimizer steps of each stage")
    p.add_argument("--sample-steps", type=int, default=20, help="score: sampler steps")
    p.add_argument("--guidance", type=float, nargs="+", default=[1.0],
                   help="score: classifier-free guidance scales to score at")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.what == "train":
        return train(out, args.steps)
    rows = {str(g): score(out, args.sample_steps, g) for g in args.guidance}
    path = save("text_stage", {"sample_steps": args.sample_steps, "template": TEMPLATE,
                               "results": rows})
    print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
