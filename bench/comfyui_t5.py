"""How far ComfyUI's T5 encoding is from DeepFloyd IF's, with ComfyUI's own loader.

    python -m bench.release.if_workflows --dir DIR       # writes DIR/t5xxl-stand-in.safetensors
    COMFY_VENV/bin/python -m bench.comfyui_t5 --comfy COMFY --t5 DIR/t5xxl-stand-in.safetensors

Run with ComfyUI's Python, from this folder. Loads the T5-v1.1-XXL file with ComfyUI's
``comfy.sd.load_clip`` (type sd3, as Load CLIP does), tokenizes prompts with ComfyUI's tokenizer
and compares, on the same token ids:

* A: ComfyUI's own encoding (``encode_from_tokens``: padded to 77, no mask inside T5);
* B: CDM Text Encode's encoding (ComfyUI's loaded T5 run with IF's padding mask);
* C: the pack's own T5 encoder on the same file with IF's mask: IF's encoding.

B must equal C to float rounding: with ``--fp32`` both run in float32; by default ComfyUI runs
T5 in fp16 on a CPU and the pack in bf16, and through 24 random layers rounding alone moves the
outputs a lot. A - C is what a user of ComfyUI's plain encoding would give IF. With random
weights the size of A - C says only that the mask matters, not how much it changes real images.
"""
from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path

import torch

PROMPTS = ("a photograph of a red fox standing in fresh snow, soft morning light",
           "an oil painting of a harbour at dusk")


def comfy_side(t5_file: Path, *, fp32: bool) -> list:
    """(ids, mask, A, B) per prompt with ComfyUI's loader, tokenizer and T5 (on the CPU, as
    ``main.py --cpu`` runs)."""
    import comfy.options
    comfy.options.enable_args_parsing()
    argv, sys.argv = sys.argv, [sys.argv[0], "--cpu", *(["--fp32-text-enc"] if fp32 else [])]
    try:
        import comfy.sd
    finally:
        sys.argv = argv

    from nodes.text_nodes import comfy_t5, masked_embed
    clip = comfy.sd.load_clip(ckpt_paths=[str(t5_file)], clip_type=comfy.sd.CLIPType.SD3)
    t5 = comfy_t5(clip)
    out = []
    for prompt in PROMPTS:
        tokens = clip.tokenize(prompt.lower().strip())
        ids = torch.tensor([[t[0] for t in tokens["t5xxl"][0]][:77]])
        n = int((ids[0] == 1).nonzero()[0]) + 1
        a = clip.encode_from_tokens(tokens, return_dict=True)["cond"].float()[:, :77]
        b = masked_embed(clip, t5, prompt)
        out.append((ids, (torch.arange(77) < n).long()[None], a, b))
    del clip, t5
    gc.collect()
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.comfyui_t5", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--comfy", required=True, type=Path, help="a ComfyUI checkout")
    p.add_argument("--t5", required=True, type=Path, help="a T5-v1.1-XXL .safetensors")
    p.add_argument("--fp32", action="store_true",
                   help="both encoders in float32 (ComfyUI's --fp32-text-enc; 19 GB each, one "
                        "after the other), so that only the method differs, not the rounding")
    args = p.parse_args(argv)
    sys.path.append(str(args.comfy))
    rows = comfy_side(args.t5, fp32=args.fp32)
    from cascade_core.formats.t5_files import load_t5
    ours = load_t5(args.t5, dtype=torch.float32 if args.fp32 else torch.bfloat16)
    for prompt, (ids, mask, a, b) in zip(PROMPTS, rows):
        with torch.no_grad():
            c = ours(ids, mask).float()
        real = mask[0].bool()
        scale = float(c.abs().mean())

        def gap(x, where, c=c, scale=scale):
            d = (x - c)[0][where].abs()
            return f"max {float(d.max()) / scale:.3f}, mean {float(d.mean()) / scale:.4f}"
        print(f"{prompt[:40]!r} ({int(real.sum())} tokens), differences relative to mean |C| "
              f"= {scale:.3f}:")
        print(f"  B (CDM Text Encode) - C (IF):  tokens {gap(b, real)};  padding {gap(b, ~real)}")
        print(f"  A (ComfyUI's own)   - C (IF):  tokens {gap(a, real)};  padding {gap(a, ~real)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
