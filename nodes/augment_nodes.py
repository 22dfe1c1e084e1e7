"""CondAugment: the paper's conditioning augmentation applied to any IMAGE."""
from __future__ import annotations

from . import widgets as W
from ._core import core
from .images import from_comfy


class CDMCondAugment:
    """Make the next stage's conditioning from an IMAGE: blur, then Gaussian noise to level s."""

    CATEGORY = "cascade"
    RETURN_TYPES = (W.LOWRES_TYPE,)
    RETURN_NAMES = ("lowres",)
    FUNCTION = "augment"
    DESCRIPTION = ("Noise level s in [0, 1] on the augmentation schedule (0 = none, 1 = pure "
                   "noise); the next "
                   "stage's s-embedding receives the same level (CDM non-truncated augmentation).")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": ("IMAGE",),
            "s": ("FLOAT", {"default": 0.1, "min": 0.0, "max": 1.0, "step": 0.01}),
            "blur_sigma": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 3.0, "step": 0.05,
                                     "tooltip": "3x3 Gaussian blur; the paper uses none at "
                                                "inference"}),
            "seed": W.seed(),
        }}

    def augment(self, image, s, blur_sigma, seed):
        return (core.make_condition(from_comfy(image), s, seed, blur_sigma=blur_sigma),)
