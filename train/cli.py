"""Command-line interface shared by the entry points: every TrainConfig field is a flag."""
from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, fields
from pathlib import Path

from cascade_core import CascadeError

from .config import PRESETS, TrainConfig, load_file, resolve, run_settings
from .options import accepted, field_type, flag

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
               "precedence: defaults < --preset < --config file < flags; a run without "
               "--preset uses the tiny preset, and each default below names the preset values "
               "where they differ", formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="", help="JSON or TOML file with any of the keys below")
    p.add_argument("--resume", nargs="?", const="auto", default="",
                   help="continue from the newest state in --out (or from the given state "
                        "file/folder)")
    p.add_argument("--init-from", default="", metavar="STAGE.safetensors",
                   help="fine-tune an existing stage (its architecture replaces the preset's)")
    add_dataclass_flags(p, TrainConfig, SKIP | ({"low_res"} if role != "sr" else set()),
                        shown=preset_defaults(role))
    return p


def preset_defaults(role: str) -> dict[str, str]:
    """Per field, what a run of ``role`` uses when no flag sets it: one value, or the value of
    each preset where they differ (``--help`` shows these, not the dataclass defaults)."""
    per = {name: asdict(resolve(role, name, {}, cli_values={})) for name in PRESETS}
    shown = {}
    for key, value in per["tiny"].items():
        values = {name: cfg[key] for name, cfg in per.items()}
        if len({repr(v) for v in values.values()}) == 1:
            shown[key] = repr(value) if isinstance(value, str) else str(value)
        else:
            shown[key] = ", ".join(f"{name} {v!r}" if isinstance(v, str) else f"{name} {v}"
                                   for name, v in values.items())
    shown["preset"] = "'tiny'"
    return shown


def add_dataclass_flags(p: argparse.ArgumentParser, cls, skip=(), shown=None):
    """One ``--flag`` per dataclass field (help text and accepted values from the field's
    metadata); unset flags are None so that presets and config files can fill them. ``shown``
    replaces a field's dataclass default in the help text (e.g. by the presets' values)."""
    for f in fields(cls):
        if f.name in skip:
            continue
        default = (shown or {}).get(f.name, repr(f.default) if isinstance(f.default, str)
                                    else f.default)
        typ = field_type(f)
        limits = "" if typ in (bool, str) else f"; {accepted(f.metadata)}"
        help_text = f"{f.metadata.get('help', '')} (default: {default}{limits})"
        help_text = help_text.replace("%", "%%")
        if f.metadata.get("choices"):
            p.add_argument(flag(f.name), choices=f.metadata["choices"], default=None,
                           help=help_text)
        elif typ is bool:
            p.add_argument(flag(f.name), action=argparse.BooleanOptionalAction, default=None,
                           help=help_text)
        else:
            p.add_argument(flag(f.name), type=typ, default=None, help=help_text)


# the fields that shape the network: a resumed run's weights have the recorded ones
ARCHITECTURE = ("resolution", "low_res", "base_channels", "channel_mult", "num_res_blocks",
                "attention_resolutions", "num_heads", "dropout", "schedule", "timesteps",
                "parameterization", "learn_sigma", "noise_conditioning", "upsample")


def parse(role: str, description: str, argv=None):
    args = build_parser(role, description).parse_args(argv)
    values = {k: v for k, v in vars(args).items() if v is not None and k not in RUN_FLAGS}
    file_values = load_file(args.config) if args.config else {}
    if args.resume and not args.config:  # continue the run as it was started; flags still win
        file_values = run_settings(run_folder(args.resume, values.get("out")))
    changed = [f"{flag(k)} {values[k]} (recorded: {file_values[k]})" for k in ARCHITECTURE
               if k in values and k in file_values and values[k] != file_values[k]]
    if args.resume and changed:
        raise CascadeError(f"{', '.join(changed)}: a resumed run keeps its architecture (its "
                           "weights have the recorded one); start a new --out, or fine-tune "
                           "with --init-from", "the recorded values or no such flags beside "
                           "--resume", changed)
    preset = values.pop("preset", None) or file_values.pop("preset", None) or "tiny"
    file_values.pop("role", None)
    cfg = resolve(role, preset, file_values, cli_values=values)
    if not cfg.data:
        raise CascadeError("no training data given",
                           "--data PATH (an image folder or an .npz file)", "nothing")
    return cfg, args.resume, args.init_from


def run_folder(resume: str, out: str | None) -> Path:
    """The folder of the run ``--resume`` continues: the given folder, a state file's folder, or
    ``--out``."""
    if resume != "auto":
        p = Path(resume)
        return p if p.is_dir() else p.parent
    return Path(out or TrainConfig.out)


def say_error(e: CascadeError) -> int:
    """Print a refused run's sentence (errors raised in a data worker arrive wrapped: the
    sentence, not their traceback); the exit status 2."""
    lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
    print(f"error: {lines[-1] if lines else e}", file=sys.stderr)
    return 2


def main(role: str, description: str, argv=None) -> int:
    from .stage_recipe import train
    try:
        cfg, resume, init_from = parse(role, description, argv)
        path = train(cfg, resume, init_from)
    except CascadeError as e:
        return say_error(e)
    if path is not None:
        print(f"wrote {path}")
    return 0
