"""Workflows 05, 06 and 11: OpenAI's released ADM files as a cascade, as a photo upscaler, and
as a parallel cascade (two classes as regions of one wide canvas).

The files are not shipped (about 0.5-2 GB each). Where to get them is said
three times, because ComfyUI refuses a missing file in a combo before any
node runs: in a note on the canvas, in the workflow's top-level ``models``
list (the frontend's missing-models dialog) and in the headless runner's
error (``known_files``).
"""
from __future__ import annotations

from ..known_files import download_url
from .workflow_spec import build, loader, note, region

BASE64 = "64x64_diffusion.pt"
CLASSIFIER64 = "64x64_classifier.pt"
UPSAMPLER256 = "64_256_upsampler.pt"


def models(*files: str) -> list[dict]:
    """The frontend's missing-models entries for released files."""
    return [{"name": f, "url": download_url(f), "directory": "cascade"} for f in files]


def download_note(node_id: int, pos: list, *, files: tuple, text: str) -> dict:
    """A note that starts with where each file comes from."""
    where = "\n".join(f"- {f}: {download_url(f)}" for f in files)
    return note(node_id, pos, f"{text}\n\nNeeds OpenAI's released files in "
                               f"ComfyUI/models/cascade/ (as downloaded, or converted with "
                               f"`python -m cascade_core.formats.convert`):\n{where}",
                size=(330, 380))


def imagenet_64_to_256():
    files = (BASE64, CLASSIFIER64, UPSAMPLER256)
    nodes = [
        loader(1, [0, 0], BASE64, title="ADM-G base (ImageNet 64px)"),
        {"id": 2, "type": "CDMClassifierLoader", "pos": [0, 170], "size": [320, 60],
         "title": "Noisy classifier (64px)", "values": {"classifier_name": CLASSIFIER64}},
        loader(3, [360, 720], UPSAMPLER256, title="ADM-U upsampler (64->256)"),
        {"id": 4, "type": "CDMBaseSampler", "pos": [360, 0], "size": [320, 660],
         "values": {"seed": 0, "steps": 25, "sampler_name": "ddim", "spacing": "ddim",
                    "class_name": "golden retriever", "batch_size": 1, "truncate_s": 0.0,
                    "classifier_scale": 1.0}},
        {"id": 5, "type": "CDMSuperResStage", "pos": [720, 0], "size": [320, 600],
         "values": {"steps": 25, "sampler_name": "ddim", "spacing": "ddim",
                    "class_name": "from input"}},
        {"id": 6, "type": "PreviewImage", "pos": [720, 680], "size": [320, 260],
         "title": "64px base sample"},
        {"id": 7, "type": "SaveImage", "pos": [1080, 0], "size": [320, 360],
         "values": {"filename_prefix": "cdm/imagenet256"}},
        download_note(8, [0, 330], files=files,
                      text="ImageNet 256px in two stages (Dhariwal & Nichol 2021: ADM-G 64 + ADM-U "
                      "256, FID 3.94 in their paper; quality with the real weights was not "
                      "measured by this pack). The base is guided by the noisy classifier at "
                      "classifier_scale; the upsampler takes the clean 64px sample (ADM-U was "
                      "trained without noise augmentation, so it needs s = 0) and the same "
                      "class. Class: any of the 1000 ImageNet names (Stage Info lists them) or an "
                      "index. About 1 TFLOP per upsampler step: use a GPU, or few steps."),
    ]
    links = [(1, 0, 4, "stage"), (2, 0, 4, "classifier"), (3, 0, 5, "stage"),
             (4, 1, 5, "lowres"), (4, 0, 6, "images"), (5, 0, 7, "images")]
    return build("05_imagenet_64_to_256", nodes, links, models=models(*files))


def upscale_photo_x4():
    nodes = [
        {"id": 1, "type": "LoadImage", "pos": [0, 0], "size": [300, 320],
         "values": {"image": "cdm_example_32px.png"}},
        loader(2, [360, 200], UPSAMPLER256, title="ADM-U upsampler (x4)"),
        {"id": 3, "type": "CDMCondAugment", "pos": [360, 0], "size": [280, 130],
         "values": {"s": 0.0}, "title": "CondAugment (s = 0 for ADM-U)"},
        {"id": 4, "type": "CDMSuperResStage", "pos": [680, 0], "size": [320, 620],
         "values": {"steps": 25, "sampler_name": "ddim", "spacing": "ddim",
                    "class_name": "schooner", "size_mismatch": "resize to fit",
                    "tile_size": 64}},
        {"id": 5, "type": "SaveImage", "pos": [1040, 0], "size": [320, 360],
         "values": {"filename_prefix": "cdm/photo_x4"}},
        download_note(6, [0, 400], files=(UPSAMPLER256,),
                      text="A photo x4 through ADM-U 64->256, in 64px tiles blended at every step "
                      "(tile_size; 0 tiles only when memory runs short). The example is 32px, so "
                      "the output is 128px: ADM-U costs about 1 TFLOP per step at 256px. ADM-U "
                      "is class-conditional without an unconditional mode, so name the ImageNet "
                      "class closest to the photo."),
    ]
    links = [(1, 0, 3, "image"), (2, 0, 4, "stage"), (3, 0, 4, "lowres"), (4, 0, 5, "images")]
    return build("06_upscale_photo_x4", nodes, links, models=models(UPSAMPLER256))


def imagenet_regions_wide():
    files = (BASE64, UPSAMPLER256)
    nodes = [
        loader(1, [0, 0], BASE64, title="ADM-G base (ImageNet 64px)"),
        region(2, 100, name="volcano", box=(0, 0, 80, 64)),
        region(3, 500, name="lakeshore", box=(48, 0, 80, 64)),
        {"id": 4, "type": "CDMBaseSampler", "pos": [720, 0], "size": [320, 800],
         "values": {"seed": 0, "steps": 25, "sampler_name": "ddim", "spacing": "ddim",
                    "class_name": "random", "batch_size": 1, "truncate_s": 0.0,
                    "canvas_width": 128, "canvas_height": 64}},
        loader(5, [1080, 700], UPSAMPLER256, title="ADM-U upsampler (64->256)"),
        {"id": 6, "type": "CDMSuperResStage", "pos": [1080, 0], "size": [320, 620],
         "values": {"steps": 25, "sampler_name": "ddim", "spacing": "ddim",
                    "class_name": "from input"}},
        {"id": 7, "type": "PreviewImage", "pos": [720, 880], "size": [320, 200],
         "title": "64 x 128 canvas"},
        {"id": 8, "type": "SaveImage", "pos": [1440, 0], "size": [320, 240],
         "values": {"filename_prefix": "cdm/imagenet_wide"}},
        download_note(9, [0, 170], files=files,
                      text="Parallel cascade on ImageNet: a 64 x 128 canvas, a volcano on the "
                      "left and a lakeshore on the right (two regions 80 px wide, overlapping by "
                      "32), drawn by ADM-G's 64px model region by region at every step; then "
                      "ADM-U upsamples each region of the canvas with the class that drew it "
                      "(class_name \"from input\" follows the regions) to 256 x 512. ADM's "
                      "models have no null class, so regions combine classes by place, not by "
                      "guidance. The noisy classifier guides regions only on 64 px boxes (its "
                      "attention pool has a fixed size): for it, use 64 px regions, e.g. three "
                      "at left 0, 32 and 64."),
    ]
    links = [(1, 0, 2, "stage"), (1, 0, 3, "stage"), (1, 0, 4, "stage"),
             (2, 0, 3, "regions"), (3, 0, 4, "regions"), (5, 0, 6, "stage"),
             (4, 1, 6, "lowres"), (4, 0, 7, "images"), (6, 0, 8, "images")]
    return build("11_imagenet_regions_wide", nodes, links, models=models(*files))


RELEASED_WORKFLOWS = {"05_imagenet_64_to_256.json": imagenet_64_to_256,
                      "06_upscale_photo_x4.json": upscale_photo_x4,
                      "11_imagenet_regions_wide.json": imagenet_regions_wide}
