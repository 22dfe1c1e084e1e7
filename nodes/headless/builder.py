"""Builds the shipped UI-format workflows from compact specs, so widgets always match the nodes.

    python -m nodes.headless.builder   # rewrites workflows/*.json

Specs are compact (``workflow_spec``: nodes with widget values by name, and
links); 01-04 run the shipped CIFAR-10 cascade, 05-06 OpenAI's released
ADM files (``released_workflows``).
"""
from __future__ import annotations

import json
from pathlib import Path

from .if_workflows import IF_WORKFLOWS
from .released_workflows import RELEASED_WORKFLOWS
from .workflow_spec import build, loader, note, region

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"
BASE = "cifar10-base16.safetensors"
SR = "cifar10-sr16to32.safetensors"
REFINER = "cifar10-refiner32.safetensors"
# the distilled students of BASE and SR that workflow 12 samples (bench/quality/distilled_cascade)
FEW_STEPS = 2
BASE_FEW = f"cifar10-base16-{FEW_STEPS}step.safetensors"
SR_FEW = f"cifar10-sr16to32-{FEW_STEPS}step.safetensors"


def base_then_sr():
    nodes = [
        loader(1, [0, 0], BASE, title="Base stage (16px)"),
        loader(2, [760, 680], SR, title="SR stage (16->32)"),
        # steps and precision: bench/tune_defaults.py picked 8 + 8 in dtype "auto" (re-tuned on
        # the GPU-continued weights; 10 + 15 before)
        {"id": 3, "type": "CDMBaseSampler", "pos": [380, 0], "size": [320, 620],
         "values": {"seed": 0, "steps": 8, "class_name": "random", "batch_size": 8,
                    "truncate_s": 0.15}},
        {"id": 4, "type": "CDMSuperResStage", "pos": [760, 0], "size": [320, 600],
         "values": {"steps": 8}},
        {"id": 5, "type": "PreviewImage", "pos": [380, 700], "size": [320, 240]},
        {"id": 6, "type": "SaveImage", "pos": [1140, 0], "size": [300, 300],
         "values": {"filename_prefix": "cdm/base_sr"}},
        note(7, [0, 190],
             "Base then one SR stage (CDM Algorithm 2, truncated conditioning augmentation).\n\n"
                          "BaseSampler stops at the level truncate_s and hands z_s to the SR "
                          "stage, whose "
                          "s-embedding receives the same level. Set truncate_s to 0 to hand over "
                          "the finished "
                          "16px image instead (then put a CondAugment in between)."),
    ]
    links = [(1, 0, 3, "stage"), (2, 0, 4, "stage"), (3, 1, 4, "lowres"), (3, 0, 5, "images"),
             (4, 0, 6, "images")]
    return build("01_base_then_sr", nodes, links)


def full_cascade():
    nodes = [
        loader(1, [0, 0], BASE, title="Base stage (16px)"),
        loader(2, [720, 200], SR, title="SR stage"),
        {"id": 3, "type": "CDMBaseSampler", "pos": [360, 0], "size": [320, 620],
         "values": {"seed": 0, "steps": 30, "class_name": "random", "batch_size": 4}},
        {"id": 4, "type": "CDMCondAugment", "pos": [720, 0], "size": [280, 130],
         "values": {"s": 0.15}},
        {"id": 5, "type": "CDMSuperResStage", "pos": [1040, 0], "size": [320, 600],
         "title": "SR 16->32"},
        {"id": 6, "type": "CDMCondAugment", "pos": [1400, 0], "size": [280, 130],
         "values": {"s": 0.1}},
        {"id": 7, "type": "CDMSuperResStage", "pos": [1720, 0], "size": [320, 600],
         "title": "SR 32->64 (same stage)", "values": {"steps": 20}},
        {"id": 8, "type": "SaveImage", "pos": [1720, 680], "size": [320, 340],
         "values": {"filename_prefix": "cdm/cascade64"}},
        {"id": 9, "type": "PreviewImage", "pos": [1040, 680], "size": [320, 260]},
        loader(11, [1400, 200], SR, title="SR stage (the same file)"),
        note(10, [0, 190],
             "The full cascade: base 16px -> CondAugment -> SR to 32px -> CondAugment -> the same "
             "SR "
                           "stage again to 64px (a recursive cascade: stages are convolutional, so "
                           "a 16->32 stage "
                           "also runs 32->64). CondAugment's s is the conditioning-augmentation "
                           "level the paper "
                           "searches after training; try 0.05-0.3."),
    ]
    links = [(1, 0, 3, "stage"), (3, 0, 4, "image"), (2, 0, 5, "stage"), (4, 0, 5, "lowres"),
             (5, 0, 6, "image"), (11, 0, 7, "stage"), (6, 0, 7, "lowres"), (7, 0, 8, "images"),
             (5, 0, 9, "images")]
    return build("02_full_cascade", nodes, links)


def upscale_your_image():
    nodes = [
        {"id": 1, "type": "LoadImage", "pos": [0, 0], "size": [300, 320],
         "values": {"image": "cdm_example_16px.png"}},
        loader(2, [360, 200], SR, title="SR stage (x2)"),
        loader(3, [680, 680], REFINER, title="Refiner (32px)"),
        {"id": 4, "type": "CDMCondAugment", "pos": [360, 0], "size": [280, 130],
         "values": {"s": 0.1}},
        {"id": 5, "type": "CDMSuperResStage", "pos": [680, 0], "size": [320, 600],
         "values": {"class_name": "unconditional", "size_mismatch": "resize to fit"}},
        {"id": 6, "type": "CDMRefiner", "pos": [1040, 0], "size": [320, 620],
         "values": {"strength": 0.4}},
        {"id": 7, "type": "SaveImage", "pos": [1400, 0], "size": [300, 300],
         "values": {"filename_prefix": "cdm/upscaled"}},
        {"id": 8, "type": "PreviewImage", "pos": [1040, 700], "size": [320, 260]},
        note(9, [0, 380],
             "Upscale your own image: LoadImage -> CondAugment -> SR stage (x2) -> Refiner.\n\n"
                            "Any IMAGE goes through CondAugment first; it gives the SR stage the "
                            "augmentation "
                            "level it was trained with. The SR stage resizes inputs that do not "
                            "fit when "
                            "size_mismatch is 'resize to fit'. The refiner re-noises its input to "
                            "`strength` and "
                            "denoises in a few steps."),
    ]
    links = [(1, 0, 4, "image"), (2, 0, 5, "stage"), (4, 0, 5, "lowres"), (3, 0, 6, "stage"),
             (5, 0, 6, "image"), (6, 0, 7, "images"), (5, 0, 8, "images")]
    return build("03_upscale_your_image", nodes, links)


def augmentation_sweep(levels=(0.0, 0.15, 0.4)):
    nodes = [
        loader(1, [0, 0], BASE, title="Base stage (16px)"),
        {"id": 3, "type": "CDMBaseSampler", "pos": [360, 0], "size": [320, 620],
         "values": {"seed": 0, "steps": 30, "class_name": "random", "batch_size": 4}},
        {"id": 4, "type": "PreviewImage", "pos": [360, 700], "size": [320, 260],
         "title": "base output"},
        note(5, [0, 190],
             "Conditioning-augmentation sweep: one base output through the same SR stage at "
             "several "
                          "levels s, side by side. This is the paper's post-training search for "
                          "the best s "
                          "(Table 3), done by eye: too little augmentation copies the base stage's "
                          "artifacts, "
                          "too much forgets its content."),
    ]
    links = [(1, 0, 3, "stage"), (3, 0, 4, "images")]
    for k, s in enumerate(levels):
        aug, sr, save, stage = 10 + 4 * k, 11 + 4 * k, 12 + 4 * k, 13 + 4 * k
        y = k * 470
        nodes += [
            {"id": aug, "type": "CDMCondAugment", "pos": [720, y], "size": [280, 130],
             "title": f"CondAugment s={s}", "values": {"s": s}},
            {"id": sr, "type": "CDMSuperResStage", "pos": [1040, y], "size": [320, 420],
             "title": f"SR at s={s}"},
            {"id": save, "type": "SaveImage", "pos": [1400, y], "size": [240, 230],
             "values": {"filename_prefix": f"cdm/sweep_s{s:.2f}"}},
            loader(stage, [720, y + 190], SR, title="SR stage (16->32)"),
        ]
        links += [(3, 0, aug, "image"), (stage, 0, sr, "stage"), (aug, 0, sr, "lowres"),
                  (sr, 0, save, "images")]
    return build("04_augmentation_sweep", nodes, links)


def sweep_s_and_steps():
    nodes = [
        {"id": 1, "type": "LoadImage", "pos": [0, 0], "size": [300, 320],
         "values": {"image": "cdm_example_16px.png"}},
        loader(2, [0, 400], SR, title="SR stage (16->32)"),
        {"id": 3, "type": "CDMSweep", "pos": [360, 0], "size": [340, 480],
         "values": {"x_axis": "s", "x_values": "0, 0.1, 0.2, 0.4", "y_axis": "steps",
                    "y_values": "10, 20, 40", "class_name": "unconditional"}},
        {"id": 4, "type": "SaveImage", "pos": [740, 0], "size": [420, 420],
         "values": {"filename_prefix": "cdm/sweep_grid"}},
        {"id": 5, "type": "PreviewImage", "pos": [740, 480], "size": [420, 200],
         "title": "cells"},
        note(6, [0, 580],
             "Sweep (XY plot): one clean image through the SR stage at four augmentation levels "
             "s (columns) and three step counts (rows). Every cell uses the same noise seeds, so "
             "the cells differ only by their axis values. This is the paper's search for the best "
             "s after training, in one node. Axes: s, steps, sampler, spacing, guidance, seed, "
             "strength (refiners); up to 64 cells.", size=(330, 200)),
    ]
    links = [(1, 0, 3, "image"), (2, 0, 3, "stage"), (3, 0, 4, "images"), (3, 1, 5, "images")]
    return build("07_sweep_s_and_steps", nodes, links)


def wide_canvas_regions():
    """Workflow 10: three classes left to right on a 16 x 48 canvas, then the SR stage."""
    nodes = [
        loader(1, [0, 0], BASE, title="Base stage (16px)"),
        region(2, 100, name="airplane", box=(0, 0, 20, 16)),
        region(3, 500, name="ship", box=(14, 0, 20, 16)),
        region(4, 900, name="automobile", box=(28, 0, 20, 16)),
        {"id": 5, "type": "CDMBaseSampler", "pos": [720, 0], "size": [320, 800],
         "values": {"seed": 0, "steps": 8, "class_name": "random", "batch_size": 4,
                    "truncate_s": 0.15, "canvas_width": 48, "canvas_height": 16}},
        loader(7, [1080, 200], SR, title="SR stage (16->32)"),
        {"id": 8, "type": "PreviewImage", "pos": [1080, 420], "size": [320, 200],
         "title": "16 x 48 canvas"},
        {"id": 9, "type": "CDMSuperResStage", "pos": [1440, 0], "size": [320, 620],
         "values": {"steps": 8, "class_name": "from input"}},
        {"id": 10, "type": "SaveImage", "pos": [1800, 0], "size": [320, 240],
         "values": {"filename_prefix": "cdm/wide"}},
        note(11, [0, 600],
             "Parallel cascade: one 16 x 48 canvas, three regions left to right (airplane, "
             "ship, automobile; 20 px wide, overlapping by 6 px). At every step each region's "
             "stage denoises its part of the shared noisy canvas with its own class, and the "
             "estimates are averaged where regions overlap (MultiDiffusion). The canvas is "
             "handed over at truncate_s (as in workflow 01) to the SR stage, whose class_name "
             "\"from input\" follows the regions: each part is upsampled to 32 x 96 with the "
             "class that drew it. The base stage was trained on 16 x 16 images; it is "
             "convolutional, so it draws any canvas, region by region.",
             size=(330, 360)),
    ]
    links = [(1, 0, 2, "stage"), (1, 0, 3, "stage"), (1, 0, 4, "stage"), (1, 0, 5, "stage"),
             (2, 0, 3, "regions"), (3, 0, 4, "regions"), (4, 0, 5, "regions"),
             (5, 1, 9, "lowres"), (5, 0, 8, "images"), (7, 0, 9, "stage"),
             (9, 0, 10, "images")]
    return build("10_wide_canvas_regions", nodes, links)


def few_step_cascade():
    """Workflow 01 on the distilled stages: steps 0 samples each as it says. ``FEW_STEPS``:
    the fewest steps per stage that keep workflow 01's quality (bench/RESULTS.md)."""
    nodes = [
        loader(1, [0, 0], BASE_FEW, title=f"Base stage (16px, {FEW_STEPS} steps)"),
        loader(2, [760, 800], SR_FEW, title=f"SR stage (16->32, {FEW_STEPS} steps)"),
        # taller than in workflow 01: the previews shown after a run stay clear of the nodes below
        {"id": 3, "type": "CDMBaseSampler", "pos": [380, 0], "size": [320, 740],
         "values": {"seed": 0, "steps": 0, "sampler_name": "ddim", "spacing": "trailing",
                    "class_name": "random", "batch_size": 8, "truncate_s": 0.15}},
        {"id": 4, "type": "CDMSuperResStage", "pos": [760, 0], "size": [320, 740],
         "values": {"steps": 0, "sampler_name": "ddim", "spacing": "trailing"}},
        {"id": 5, "type": "PreviewImage", "pos": [380, 800], "size": [320, 240]},
        {"id": 6, "type": "SaveImage", "pos": [1140, 0], "size": [300, 300],
         "values": {"filename_prefix": "cdm/few_step"}},
        note(7, [0, 190],
             f"Workflow 01 on distilled stages: rounds of progressive distillation (python -m "
             f"train.distill), each halving the steps, took the shipped stages down to "
             f"{FEW_STEPS} DDIM steps at workflow 01's quality.\n\nsteps 0 = as the stage "
             f"says (DDIM, {FEW_STEPS} steps, trailing spacing); other steps work, with a "
             "warning, most likely worse. The -4step files sample 4 + 4 steps (a little better, "
             "slower). Quality and speed: bench/RESULTS.md, distillation.", size=(330, 300)),
    ]
    links = [(1, 0, 3, "stage"), (2, 0, 4, "stage"), (3, 1, 4, "lowres"), (3, 0, 5, "images"),
             (4, 0, 6, "images")]
    return build("12_few_step_cascade", nodes, links)


SHIPPED = {"01_base_then_sr.json": base_then_sr, "02_full_cascade.json": full_cascade,
           "03_upscale_your_image.json": upscale_your_image,
           "04_augmentation_sweep.json": augmentation_sweep, **RELEASED_WORKFLOWS,
           "07_sweep_s_and_steps.json": sweep_s_and_steps, **IF_WORKFLOWS,
           "10_wide_canvas_regions.json": wide_canvas_regions,
           "12_few_step_cascade.json": few_step_cascade}


def main():
    WORKFLOWS.mkdir(exist_ok=True)
    for name, make in SHIPPED.items():
        (WORKFLOWS / name).write_text(json.dumps(make(), indent=1) + "\n")
        print(f"wrote workflows/{name}")


if __name__ == "__main__":
    main()
