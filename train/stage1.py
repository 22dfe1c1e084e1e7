"""Train a base stage: class-conditional diffusion at low resolution (CDM Algorithm 1, top)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main("base", __doc__))
