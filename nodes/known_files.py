"""Stage files the pack knows by name, and where a person gets each one.

A missing file that is listed here gets its hint in the error (the headless
runner's validation, the Stage and Classifier Loaders, the workflows' notes):
the shipped CIFAR-10 stages, every file of OpenAI's released ADM and
improved-diffusion checkpoints (``cascade_core.formats.adm_table``), and the
DeepFloyd IF stages and T5 encoder workflows 08 and 09 use.
"""
from __future__ import annotations

from ._core import core

RELEASED = core.formats.adm_table.RELEASED

SHIPPED = ("ships with the pack in its weights/ folder: restore it with `git checkout weights/` "
           "in the pack's folder, or reinstall the pack")
KNOWN_FILES = {
    "cifar10-base16.safetensors": SHIPPED, "cifar10-sr16to32.safetensors": SHIPPED,
    "cifar10-refiner32.safetensors": SHIPPED,
}
for _entry in RELEASED:
    for _file in _entry.files:
        KNOWN_FILES[_file] = (f"is {_entry.what.split(' (')[0]}, released by OpenAI: download "
                              f"{_entry.url}{_file} into ComfyUI/models/cascade/ (it loads as it "
                              "is; `python -m cascade_core.formats.convert` makes a smaller fp16 "
                              ".safetensors)")


IF_PAGES = {"IF-I-XL-v1.0": "stage I, 64 px", "IF-II-L-v1.0": "stage II, 64->256 px"}
IF_PARTS = ("unet/config.json", "unet/diffusion_pytorch_model.fp16.safetensors")
# name in its models folder -> (download address, models folder)
IF_FILES = {f"{repo}/{part}": (f"https://huggingface.co/DeepFloyd/{repo}/resolve/main/{part}",
                               "cascade") for repo in IF_PAGES for part in IF_PARTS}
T5_FILE = {"t5xxl_fp16.safetensors": ("https://huggingface.co/comfyanonymous/flux_text_encoders/"
                                      "resolve/main/t5xxl_fp16.safetensors", "text_encoders")}
for _repo, _what in IF_PAGES.items():
    KNOWN_FILES[f"{_repo}/unet/config.json"] = (
        f"is DeepFloyd IF {_what}, under the DeepFloyd IF licence (non-commercial research use): "
        f"accept it on huggingface.co/DeepFloyd/{_repo}, then download unet/config.json and "
        f"unet/diffusion_pytorch_model.fp16.safetensors into ComfyUI/models/cascade/{_repo}/unet/")
KNOWN_FILES["t5xxl_fp16.safetensors"] = (
    f"is T5-v1.1-XXL, DeepFloyd IF's text encoder: download {T5_FILE['t5xxl_fp16.safetensors'][0]}"
    " into ComfyUI/models/text_encoders/ (headless: into a --stages folder, with T5's "
    "spiece.model from IF's tokenizer/ folder beside it)")


def download_url(name: str) -> str | None:
    """Where a released file is published, or None."""
    return next((e.url + name for e in RELEASED if name in e.files), None)


def missing_file_hint(name: str) -> str:
    """`` (hint)`` for a known stage file, else an empty string."""
    hint = KNOWN_FILES.get(str(name))
    return f" ({name} {hint})" if hint else ""
