"""What every training recipe's configuration shares: where, what data, how to run and report.

``option`` declares a field with its ``--help`` text (and choices), which the
command lines turn into flags. ``RunConfig`` holds the fields that the stage
recipe (``train.config.TrainConfig``) and the shallow-cascade recipe
(``train.shallow_config.ShallowTrainConfig``) both have: each field has this
one home.
"""
from __future__ import annotations

from dataclasses import dataclass, field


def option(default, help_text: str, **metadata):
    """A dataclass field whose metadata carries its ``--help`` text (and ``choices`` if given)."""
    return field(default=default, metadata={"help": help_text, **metadata})


@dataclass
class RunConfig:
    """Fields shared by every training recipe."""

    data: str = option("",
                       "image folder (class sub-folders = labels) or .npz with 'images' [and "
                       "'labels']")
    out: str = option("runs/stage", "output folder for checkpoints, samples and logs")
    batch_size: int = option(32, "global batch (split across torchrun processes and accumulation)")
    workers: int = option(0, "data-loading worker processes per rank")
    seed: int = option(0, "seed of every random choice (data order, augmentation, noise)")
    lr: float = option(2e-4, "peak AdamW learning rate")
    label_dropout: float = option(0.1,
                                  "fraction of labels replaced by the null class (for guidance)")
    precision: str = option("auto",
                            "auto | fp32 | bf16 | fp16 (auto: bf16 on GPUs that have it, else "
                            "fp16; "
                                    "fp32 on CPU)")
    device: str = option("auto", "auto | cpu | cuda | cuda:N")
    keep: int = option(3, "training states (and stage checkpoints) kept")
    tensorboard: bool = option(True, "log to TensorBoard when it is installed")
    progress: bool = option(True, "show a progress bar")
