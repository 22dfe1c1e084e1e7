"""Train a super-resolution stage with Gaussian conditioning augmentation amortized over
the level s (CDM Algorithm 1, bottom), optional blur augmentation, on random crops."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main("sr", __doc__))
