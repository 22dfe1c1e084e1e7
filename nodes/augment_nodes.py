"""CondAugment: the paper's conditioning augmentation applied to any IMAGE."""
from __future__ import annotations

from . import widgets as W
from ._core import core
from .images import from_comfy


class CDMCondAugment:
    """Make the next stage's conditioning from an IMAGE: blur, then Gaussian noise to level s."""

    CATEGORY = W.CATEGORY
    RETURN_TYPES = (W.LOWRES_TYPE,)
    RETURN_NAMES = ("lowres",)
    OUTPUT_TOOLTIPS = ("the conditioning for a super-resolution stage: the augmented images and "
                       "their level s",)
    FUNCTION = "augment"
    DESCRIPTION = ("Turns any IMAGE into a super-resolution stage's conditioning: optional blur, "
                   "then Gaussian noise to level s in [0, 1] on the augmentation schedule (0 = "
                   "none, 1 = pure noise). The next stage is told the same level (CDM "
                   "non-truncated augmentation), so errors of the stage before do not compound.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": W.image("the images to condition on (a base output, or any image)"),
            "s": W.augmentation_level(0.1),
            "blur_sigma": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 3.0, "step": 0.05,
                                     "tooltip": "3x3 Gaussian blur; the paper uses none at "
                                                "inference"}),
            "seed": W.seed(),
        }}

    def augment(self, image, s, blur_sigma, seed):
        return (core.make_condition(from_comfy(image), s, seed, blur_sigma=blur_sigma),)
