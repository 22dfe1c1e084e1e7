"""Workflows 08 and 09: DeepFloyd IF from a prompt, and the CDM paper's search for the best
augmentation level on IF's stage II.

IF's weights are published under the DeepFloyd IF licence (non-commercial research use) and
are not shipped. As for the ADM workflows, where to get each file is said three times: in a note
on the canvas (with the licence), in the workflow's ``models`` list (the frontend's
missing-models list) and in the headless runner's error (``known_files``).
"""
from __future__ import annotations

from ..known_files import IF_FILES, T5_FILE
from .workflow_spec import build, loader, note

IF_I, IF_II = "IF-I-XL-v1.0/unet/config.json", "IF-II-L-v1.0/unet/config.json"
PROMPT = "a photograph of a red fox standing in fresh snow, soft morning light"
LICENCE = ("DeepFloyd IF's weights are published under the DeepFloyd IF licence (non-commercial "
           "research use): accept it on the model pages of DeepFloyd/IF-I-XL-v1.0 and "
           "DeepFloyd/IF-II-L-v1.0 before downloading.")


def models() -> list[dict]:
    """The frontend's missing-models entries: each stage's config and fp16 weights, and T5."""
    return [{"name": name, "url": url, "directory": directory}
            for name, (url, directory) in {**IF_FILES, **T5_FILE}.items()]


def where_note(node_id: int, pos: list, *, text: str) -> dict:
    """A note that explains the workflow, then the licence and where each file goes."""
    files = "\n".join(f"- {directory}/{name}: {url}"
                      for name, (url, directory) in {**IF_FILES, **T5_FILE}.items())
    return note(node_id, pos, f"{text}\n\n{LICENCE}\n\nFiles (into ComfyUI/models/...):\n{files}",
                size=(330, 520))


def text_nodes() -> list[dict]:
    """Load CLIP (T5-v1.1-XXL) -> CDM Text Encode, along the top."""
    return [
        {"id": 1, "type": "CLIPLoader", "pos": [0, 0], "size": [320, 110],
         "title": "T5-v1.1-XXL", "values": {"clip_name": "t5xxl_fp16.safetensors",
                                            "type": "sd3", "device": "default"}},
        {"id": 2, "type": "CDMTextEncode", "pos": [360, 0], "size": [320, 260],
         "values": {"prompt": PROMPT, "negative_prompt": ""}},
    ]


def if_stage_one(node_id: int, pos: list) -> dict:
    """IF-I at the pipeline's own settings, fewer steps: DDPM on the leading grid, guidance 7."""
    return {"id": node_id, "type": "CDMBaseSampler", "pos": pos, "size": [320, 660],
            "values": {"seed": 0, "steps": 50, "sampler_name": "ddpm", "spacing": "ddim",
                       "class_name": "unconditional", "guidance": 7.0, "batch_size": 1,
                       "truncate_s": 0.0}}


def prompt_to_256():
    nodes = [
        *text_nodes(),
        loader(3, [0, 340], IF_I, title="IF-I-XL (64px)"),
        if_stage_one(4, [360, 340]),
        {"id": 5, "type": "CDMCondAugment", "pos": [720, 340], "size": [280, 130],
         "title": "noise_level 250 (s = 0.25)", "values": {"s": 0.25}},
        loader(6, [720, 530], IF_II, title="IF-II-L (64->256px)"),
        {"id": 7, "type": "CDMSuperResStage", "pos": [1080, 0], "size": [320, 620],
         "values": {"steps": 50, "sampler_name": "ddpm", "spacing": "ddim",
                    "class_name": "from input", "guidance": 4.0}},
        {"id": 8, "type": "PreviewImage", "pos": [720, 700], "size": [280, 280],
         "title": "64px stage I sample"},
        {"id": 9, "type": "SaveImage", "pos": [1440, 0], "size": [320, 380],
         "values": {"filename_prefix": "cdm/if_256"}},
        where_note(10, [0, 480],
                   text="DeepFloyd IF, prompt to 256 px: T5-v1.1-XXL encodes the prompt (Load "
                   "CLIP with a t5xxl file, type sd3; IF's text_encoder is the same model), "
                   "IF-I draws 64 px, Cond Augment noises it to IF's noise_level 250 (s = 0.25; "
                   "IF-II noises after upsampling, as IF does) and IF-II upsamples it to 256 px. "
                   "Both stages sample with IF's dynamic thresholding. Image quality with the "
                   "real weights was not measured by this pack. bf16 on a GPU; on a CPU "
                   "IF-I-XL takes about 35 s per step."),
    ]
    links = [(1, 0, 2, "clip"), (3, 0, 4, "stage"), (2, 0, 4, "text"), (4, 0, 5, "image"),
             (6, 0, 7, "stage"), (5, 0, 7, "lowres"), (2, 0, 7, "text"), (4, 0, 8, "images"),
             (7, 0, 9, "images")]
    return build("08_if_prompt_to_256", nodes, links, models=models())


def if_s_search():
    nodes = [
        *text_nodes(),
        loader(3, [0, 340], IF_I, title="IF-I-XL (64px)"),
        if_stage_one(4, [360, 340]),
        loader(5, [720, 0], IF_II, title="IF-II-L (64->256px)"),
        {"id": 6, "type": "CDMSweep", "pos": [720, 340], "size": [340, 520],
         "values": {"x_axis": "s", "x_values": "0, 0.1, 0.25, 0.5", "y_axis": "none",
                    "steps": 50, "sampler_name": "ddpm", "spacing": "ddim",
                    "class_name": "unconditional", "guidance": 4.0}},
        {"id": 7, "type": "SaveImage", "pos": [1100, 340], "size": [420, 420],
         "values": {"filename_prefix": "cdm/if_s_search"}},
        where_note(8, [0, 480],
                   text="The CDM paper's post-training search for the best augmentation level "
                   "(its Table 3), on DeepFloyd IF stage II: one IF-I sample through IF-II at "
                   "s = 0, 0.1, 0.25 and 0.5 (IF's noise_level 0, 100, 250, 500; IF's default "
                   "is 250), same noise in every cell, as one labelled grid. Too little "
                   "augmentation copies stage I's artifacts; too much forgets its content."),
    ]
    links = [(1, 0, 2, "clip"), (3, 0, 4, "stage"), (2, 0, 4, "text"), (5, 0, 6, "stage"),
             (4, 0, 6, "image"), (2, 0, 6, "text"), (6, 0, 7, "images")]
    return build("09_if_s_search", nodes, links, models=models())


IF_WORKFLOWS = {"08_if_prompt_to_256.json": prompt_to_256, "09_if_s_search.json": if_s_search}
