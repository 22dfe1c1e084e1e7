"""Two versions of the shipped weights rendering the model card's workflow, side by side.

    python -m bench.speed.weights_speed --old-rev 9a19e94   # that commit's weights vs weights/
    python -m bench.speed.weights_speed --old DIR --new DIR   # any two folders of stage files

Better weights must render no slower: the model card's render
(workflow 01, batch 16, 30 + 30 steps, fp32) runs with each set of stage files
in alternation, after a warm-up, and the medians and their ratio are printed.
Same architecture means the same cost; this checks it rather than assuming it.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from ..common import alternating, machine, save

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "workflows" / "01_base_then_sr.json"
STAGES = ("cifar10-base16", "cifar10-sr16to32", "cifar10-refiner32")
CARD = ["batch_size=16", "steps=30", "dtype=fp32"]


def weights_at(rev: str, dest: Path) -> Path:
    """The shipped stage files of git revision ``rev``, written under ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in STAGES:
        blob = subprocess.run(["git", "show", f"{rev}:weights/{name}.safetensors"], cwd=ROOT,
                              capture_output=True, check=False)
        if blob.returncode:
            sys.exit(f"error: weights/{name}.safetensors not found at revision {rev!r}: "
                     f"{blob.stderr.decode().strip()[:200]}")
        (dest / f"{name}.safetensors").write_bytes(blob.stdout)
    return dest


def render_times(folders: dict, repeats: int, overrides: list[str]) -> dict:
    """Median seconds of a run with each folder of stage files, in alternation after a warm-up.
    Each run adds its folder in front of the search path and removes it again, so that the two
    sets (same file names) never shadow each other."""
    from nodes import comfy_bridge as bridge
    from nodes.headless.executor import run

    out = Path(tempfile.mkdtemp(prefix="weights_speed_"))

    def with_folder(d):
        try:
            run(WORKFLOW, out, overrides, stage_dirs=[d])
        finally:
            bridge.remove_stage_dir(d)
    times = alternating({n: (lambda d=d: with_folder(d)) for n, d in folders.items()},
                        repeats=repeats)
    return {n: t["median"] for n, t in times.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.speed.weights_speed", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--old", default="", help="folder of the old stage files")
    p.add_argument("--old-rev", default="", help="or the git revision whose weights/ to use")
    p.add_argument("--new", default=str(ROOT / "weights"))
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--set", action="append", default=[], help="extra workflow overrides")
    args = p.parse_args(argv)
    if bool(args.old) == bool(args.old_rev):
        p.error("give one of --old DIR and --old-rev REV")
    old = Path(args.old) if args.old else weights_at(args.old_rev,
                                                     Path(tempfile.mkdtemp()) / "old")
    medians = render_times({"old": old, "new": Path(args.new)}, args.repeats, CARD + args.set)
    ratio = medians["old"] / medians["new"]
    print(f"model card render ({' '.join(CARD + args.set)}), median of {args.repeats}: "
          f"old {medians['old']:.2f} s, new {medians['new']:.2f} s, new is {ratio:.2f}x "
          f"the old speed")
    save("weights_speed", {"machine": machine(), "old": args.old_rev or args.old,
                           "settings": CARD + args.set, "median_seconds": medians,
                           "old_over_new": ratio})
    return 0


if __name__ == "__main__":
    sys.exit(main())
