"""Train a super-resolution stage (role "sr"): diffusion conditioned on the upsampled low-res
image, with Gaussian conditioning augmentation amortized over the level s (CDM Algorithm 1,
bottom), optional blur augmentation, on random crops. A cascade with several SR stages runs this
once per stage: 64->256->1024 px is train.stage2 --low-res 64 --resolution 256, then
train.stage2 --low-res 256 --resolution 1024."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main("sr", __doc__))
