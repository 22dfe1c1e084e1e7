"""Command-line interface shared by the entry points: every TrainConfig field is a flag."""
from __future__ import annotations

import argparse
import sys
from dataclasses import MISSING, fields

from cascade_core import CascadeError

from .config import ROLE_DEFAULTS, TrainConfig, load_file, resolve

EXAMPLES = {
    "base": "python -m train.stage1 --data ../shared/data/cifar10/train --out runs/base16 --preset "
            "small "
            "--resolution 16 --steps 20000",
    "sr": "python -m train.stage2 --data ../shared/data/cifar10/train --out runs/sr32 --preset "
          "small "
          "--resolution 32 --low-res 16 --crop 16 --steps 20000",
    "refiner": "python -m train.stage3 --data ../shared/data/cifar10/train --out runs/ref32 "
               "--preset small "
               "--resolution 32 --steps 10000",
}
SKIP = {"role"}
RUN_FLAGS = ("config", "resume", "init_from")  # flags of the run, not fields of the config


def build_parser(role: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"python -m train.stage{ {'base': 1, 'sr': 2, 'refiner': 3}[role] }",
        description=description,
        epilog=f"example:\n  {EXAMPLES[role]}\n  torchrun --nproc_per_node=2 -m train.stage"
               f"{ {'base': 1, 'sr': 2, 'refiner': 3}[role] } ... (DDP; --batch-size stays the "
               "global batch)\n"
               f"precedence: defaults < --preset < --config file < flags",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="", help="JSON or TOML file with any of the keys below")
    p.add_argument("--resume", nargs="?", const="auto", default="",
                   help="continue from the newest state in --out (or from the given state "
                        "file/folder)")
    p.add_argument("--init-from", default="", metavar="STAGE.safetensors",
                   help="fine-tune an existing stage (its architecture replaces the preset's)")
    add_dataclass_flags(p, TrainConfig, SKIP | ({"low_res"} if role != "sr" else set()),
                        defaults=ROLE_DEFAULTS[role])
    return p


def add_dataclass_flags(p: argparse.ArgumentParser, cls, skip=(), defaults=None):
    """One ``--flag`` per dataclass field (help text from the field's metadata); unset flags are
    None so that presets and config files can fill them."""
    defaults = defaults or {}
    for f in fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = defaults.get(f.name, f.default if f.default is not MISSING else None)
        help_text = f.metadata.get("help", "") + f" (default: {default})"
        if f.metadata.get("choices"):
            p.add_argument(flag, choices=f.metadata["choices"], default=None, help=help_text)
        elif f.type in (bool, "bool"):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                           help=help_text)
        else:
            kind = {"int": int, "float": float,
                    "str": str}.get(f.type if isinstance(f.type, str) else f.type.__name__,
                                                               str)
            p.add_argument(flag, type=kind, default=None, help=help_text)


def parse(role: str, description: str, argv=None):
    args = build_parser(role, description).parse_args(argv)
    values = {k: v for k, v in vars(args).items() if v is not None and k not in RUN_FLAGS}
    file_values = load_file(args.config) if args.config else {}
    preset = values.pop("preset", None) or file_values.pop("preset", None) or "tiny"
    file_values.pop("role", None)
    cfg = resolve(role, preset, file_values, cli_values=values)
    if not cfg.data:
        raise CascadeError("no training data given",
                           "--data PATH (an image folder or an .npz file)", "nothing")
    return cfg, args.resume, args.init_from


def main(role: str, description: str, argv=None) -> int:
    from .stage_recipe import train
    try:
        cfg, resume, init_from = parse(role, description, argv)
        path = train(cfg, resume, init_from)
    except CascadeError as e:
        # errors raised in a data worker arrive wrapped: show the sentence, not their traceback
        lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
        print(f"error: {lines[-1] if lines else e}", file=sys.stderr)
        return 2
    if path is not None:
        print(f"wrote {path}")
    return 0
