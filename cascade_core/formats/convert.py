"""Convert a released checkpoint into this pack's self-describing file: OpenAI's ADM /
improved-diffusion ``.pt``, or a DeepFloyd IF stage in either of its layouts.

    python -m cascade_core.formats.convert 64x64_diffusion.pt adm-g-64.safetensors --dtype fp16
    python -m cascade_core.formats.convert my_adm.pt out.safetensors \
        --set role=base --set resolution=64 --set schedule=cosine --set timesteps=1000
    python -m cascade_core.formats.convert IF-I-XL-v1.0/unet if-i-xl.safetensors --dtype bf16
    python -m cascade_core.formats.convert IF-II-L-v1.0/config.yml if-ii-l.safetensors

The output holds the full config (and, for ImageNet files, the 1000 class
names), so it loads anywhere without the table of released files. ``--set``
overrides any ADM table value (see ``adm_table.TableEntry``); an IF stage's
own config says everything.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..base.errors import CascadeError
from ..base.precision import DTYPES
from .adm_table import TableEntry
from .atomic import check_target
from .deepfloyd import is_deepfloyd, load_deepfloyd
from .stage_file import load_released, save_stage

INT_FIELDS = {"resolution", "low_res", "num_heads", "num_head_channels", "timesteps",
              "num_res_blocks"}
TUPLE_FIELDS = {"channel_mult", "attention_resolutions"}


def parse_override(text: str) -> tuple[str, object]:
    """``key=value`` with the value typed as the table field is."""
    key, sep, value = text.partition("=")
    known = set(TableEntry.__dataclass_fields__) - {"files", "fingerprint", "what"}
    if not sep or key not in known:
        raise CascadeError("bad --set", f"key=value with key one of {sorted(known)}", repr(text))
    try:
        if key in INT_FIELDS:
            return key, int(value)
        if key in TUPLE_FIELDS:
            return key, tuple(float(v) if "." in v else int(v) for v in value.split(",") if v)
    except ValueError:
        raise CascadeError(f"bad --set value for {key}", "a number (or comma-separated numbers)",
                           repr(value)) from None
    return key, value


def convert(src, dst, dtype: str = "fp16", overrides: dict | None = None,
            overwrite: bool = False) -> Path:
    """Write ``src`` (a released .pt, or an IF download) as a stage or classifier file at
    ``dst``; an existing ``dst`` is refused unless ``overwrite``, and never the input itself."""
    check_target(dst, overwrite=overwrite, sources=[src])
    if is_deepfloyd(src):
        if overrides:
            raise CascadeError("--set applies to ADM files; an IF stage's own config says "
                               "everything", "no --set", sorted(overrides))
        model = load_deepfloyd(src, DTYPES[dtype] if dtype in DTYPES else None)
    else:
        model = load_released(src, expect=None, overrides=overrides)
    return save_stage(model, dst, dtype=dtype)


def main(argv=None) -> int:
    """The command line; exit code 2 with one sentence on bad input."""
    p = argparse.ArgumentParser(prog="python -m cascade_core.formats.convert",
                                description=__doc__.splitlines()[0])
    p.add_argument("src", help="released .pt / .pth file, or an IF stage (its folder, unet/ "
                   "folder, config.json or config.yml)")
    p.add_argument("dst", help="output .safetensors")
    p.add_argument("--dtype", default="fp16", choices=("fp16", "fp32", "bf16"))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a table value (repeatable)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    args = p.parse_args(argv)
    try:
        overrides = dict(parse_override(s) for s in args.set)
        out = convert(args.src, args.dst, dtype=args.dtype, overrides=overrides,
                      overwrite=args.overwrite)
    except CascadeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
