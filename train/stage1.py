"""Train a base stage (role "base"): the first stage of a cascade, class-conditional (or
unconditional) diffusion at low resolution (CDM Algorithm 1, top). Then train.stage2 trains the
SR stage(s) that upsample its output, and train.stage3 an optional refiner."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main("base", __doc__))
