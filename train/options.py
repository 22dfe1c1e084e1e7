"""What every training recipe's configuration shares, and how each field declares its range.

``option`` declares a field with its ``--help`` text and what values it
accepts (``choices``, ``min`` / ``max`` inclusive, ``gt`` / ``lt`` exclusive,
a ``pattern``); ``check_options`` refuses any field outside them with one
sentence naming the flag, before a run writes anything. ``RunConfig`` holds
the fields that the stage recipe (``train.config.TrainConfig``) and the
shallow-cascade recipe (``train.shallow_train_config.ShallowTrainConfig``) both have:
each field has this one home.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields

from cascade_core import CascadeError

INT_LIST = r"^\d+(,\d+)*$"


def option(default, help_text: str, **accepts):
    """A dataclass field whose metadata carries its ``--help`` text and the values it accepts."""
    return field(default=default, metadata={"help": help_text, **accepts})


def flag(name: str) -> str:
    """The command-line flag of a config field."""
    return "--" + name.replace("_", "-")


def accepted(meta: dict) -> str:
    """The accepted values of a field, in words (for errors and ``--help``)."""
    if "choices" in meta:
        return "one of " + ", ".join(str(c) for c in meta["choices"])
    if "pattern" in meta:
        return meta.get("what", f"text matching {meta['pattern']}")
    lo = f"> {meta['gt']}" if "gt" in meta else f">= {meta['min']}" if "min" in meta else ""
    hi = f"< {meta['lt']}" if "lt" in meta else f"<= {meta['max']}" if "max" in meta else ""
    return " and ".join(p for p in (lo, hi) if p) or "any value"


def _problem(value, meta: dict, typ) -> bool:
    if typ is bool:
        return not isinstance(value, bool)
    if typ is str:
        if not isinstance(value, str):
            return True
        if "choices" in meta:
            return value not in meta["choices"]
        if "pattern" in meta:
            return not (re.match(meta["pattern"], value.replace(" ", ""))
                        or (meta.get("empty") and not value.strip()))
        return False
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return True
    if typ is int and not float(value).is_integer():
        return True
    if not math.isfinite(value):
        return True
    return (("min" in meta and value < meta["min"]) or ("max" in meta and value > meta["max"])
            or ("gt" in meta and value <= meta["gt"]) or ("lt" in meta and value >= meta["lt"]))


def field_type(f) -> type:
    """int, float, bool or str: the type a field's annotation names."""
    name = f.type if isinstance(f.type, str) else f.type.__name__
    return {"int": int, "float": float, "bool": bool}.get(name, str)


def check_options(cfg):
    """Raise one CascadeError naming the first field (as its flag) outside its declared range."""
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if _problem(value, f.metadata, field_type(f)):
            name = field_type(f).__name__
            raise CascadeError(f"{flag(f.name)} is out of range",
                               f"{'a' if name != 'int' else 'an'} {name}, {accepted(f.metadata)}",
                               repr(value))


@dataclass
class RunConfig:
    """Fields shared by every training recipe."""

    data: str = option("", "image folder (class sub-folders = labels) or .npz with 'images' "
                           "[and 'labels']")
    out: str = option("runs/stage", "output folder for checkpoints, samples and logs")
    batch_size: int = option(32, "global batch (split across torchrun processes and accumulation)",
                             min=1, max=2 ** 20)
    workers: int = option(0, "data-loading worker processes per rank", min=0, max=256)
    seed: int = option(0, "seed of every random choice (data order, augmentation, noise)", min=0,
                       max=2 ** 63 - 1)
    lr: float = option(2e-4, "peak AdamW learning rate", gt=0, max=1)
    label_dropout: float = option(0.1, "fraction of labels replaced by the null class (for "
                                       "guidance)", min=0, max=1)
    precision: str = option("auto", "auto: bf16 autocast where the device computes it natively "
                                    "(GPUs that have it, CPUs with AVX512-BF16 or AMX), fp16 "
                                    "with loss scaling on older GPUs, else fp32",
                            choices=("auto", "fp32", "bf16", "fp16"))
    compile: bool = option(False, "torch.compile the network (the compile time is printed and "
                                  "logged; falls back to eager with a warning if it fails)")
    device: str = option("auto", "auto | cpu | cuda | cuda:N", pattern=r"^(auto|cpu|cuda(:\d+)?)$",
                         what="auto, cpu, cuda or cuda:N")
    keep: int = option(3, "training states (and stage checkpoints) kept", min=1)
    tensorboard: bool = option(True, "log to TensorBoard when it is installed")
    progress: bool = option(True, "show a progress bar")
    verify_data: str = option("auto", "decode every image before training: on, off, or auto (on "
                                      f"for up to {60_000:,} images, about a minute here)",
                              choices=("auto", "on", "off"))
    cache_images: bool = option(True, "decode every image once at the start and keep them in "
                                      "memory (when they fit in 2 GB): no JPEG decoding per step")
    bad_data: str = option("error", "an image that does not decode: error (stop before training) "
                                    "or skip (leave it out, list it in OUT/skipped.txt; implies "
                                    "--verify-data on)", choices=("error", "skip"))
    collective_timeout: float = option(600.0, "seconds a process waits for the others before the "
                                              "run stops with an error naming the process that "
                                              "stopped answering (longer than a checkpoint write "
                                              "or a preview grid)", gt=0)
